// Turns the pixel art in art.js into canvases and registers them as KAPLAY sprites.
import { k } from "./engine.js";
import * as art from "./art.js";

const ART_SCALE = 2; // one art pixel is drawn as 2x2 screen pixels

/** Rasterises art rows into a new canvas, `scale` screen pixels per art pixel. */
function artToCanvas(rows, scale = ART_SCALE) {
  const canvas = document.createElement("canvas");
  canvas.width = rows[0].length * scale;
  canvas.height = rows.length * scale;
  paintArt(canvas.getContext("2d"), rows, 0, 0, scale);
  return canvas;
}

/** Paints art rows onto a 2D context with the top-left corner at (x, y). */
export function paintArt(ctx, rows, x, y, scale = ART_SCALE) {
  rows.forEach((row, rowIndex) => {
    [...row].forEach((pixel, colIndex) => {
      if (pixel === ".") return;
      ctx.fillStyle = art.PALETTE[pixel];
      ctx.fillRect(x + colIndex * scale, y + rowIndex * scale, scale, scale);
    });
  });
}

/** Two-frame strip: the art, then the art one pixel higher, for a cheap walk/bob cycle. */
function bobStrip(rows) {
  const lifted = [...rows.slice(1), ".".repeat(rows[0].length)];
  const frameWidth = rows[0].length * ART_SCALE;
  const strip = document.createElement("canvas");
  strip.width = frameWidth * 2;
  strip.height = rows.length * ART_SCALE;
  const ctx = strip.getContext("2d");
  paintArt(ctx, rows, 0, 0);
  paintArt(ctx, lifted, frameWidth, 0);
  return strip;
}

const ANIMATED = { hero: art.HERO, elder: art.ELDER, slime: art.SLIME, bat: art.BAT, scorpion: art.SCORPION };
const STILL = { crown: art.CROWN, heart: art.HEART, tree: art.TREE, boulder: art.BOULDER, cactus: art.CACTUS };

export function loadSprites() {
  for (const [name, rows] of Object.entries(ANIMATED)) {
    k.loadSprite(name, bobStrip(rows), {
      sliceX: 2,
      anims: { idle: 0, move: { from: 0, to: 1, loop: true, speed: 6 } },
    });
  }
  for (const [name, rows] of Object.entries(STILL)) {
    k.loadSprite(name, artToCanvas(rows));
  }
}
