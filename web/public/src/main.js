// Entry point: load the art, register the scenes, start at the title screen.
import { k } from "./engine.js";
import { loadSprites } from "./sprites.js";
import { loadMapSprites } from "./world.js";
import { registerTitleScene } from "./scenes/title.js";
import { registerMenuScene } from "./scenes/menu.js";
import { registerNewGameScene } from "./scenes/newgame.js";
import { registerQuestScene } from "./scenes/quest.js";
import { registerSurvivorScene } from "./scenes/survivor.js";
import { registerLeaderboardScene } from "./scenes/leaderboard.js";
import { registerRecoverScene } from "./scenes/recover.js";
import { installTestHook } from "./testhook.js";

loadSprites();
loadMapSprites();
registerTitleScene();
registerMenuScene();
registerNewGameScene();
registerQuestScene();
registerSurvivorScene();
registerLeaderboardScene();
registerRecoverScene();
if (new URLSearchParams(window.location.search).get("test") === "1") installTestHook();
k.onLoad(() => k.go("title"));
