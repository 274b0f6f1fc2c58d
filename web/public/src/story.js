// Quest content: one chapter per map. Sub-chapters: 1 talk to the guide, 2 clear the pests,
// 3 defeat the boss, 4 step through the portal to the next chapter.

export const SUB_CHAPTER = { TALK: 1, HUNT: 2, BOSS: 3, PORTAL: 4 };

export const CHAPTERS = [
  {
    number: 1,
    map: "Grassland",
    title: "Chapter 1: The Stale Meadow",
    guide: "Elder Ada",
    enemy: "slime",
    huntCount: 5,
    boss: { kind: "slime", name: "King Slime", hp: 24 },
    reward: { skill: "swordBeam", text: "Skill unlocked: Sword Beam (press X)" },
    lines: {
      talk: [
        "Welcome, Cache Keeper! The meadow's memory has gone stale.",
        "Slimes are eating our keys. Clear five of them for me!",
        "Move with the arrows or WASD, swing your sword with Space.",
      ],
      hunt: ["Five slimes, Keeper. They wobble, but they bite."],
      boss: ["Their king has woken up! Watch out, he charges."],
      done: ["The meadow remembers again. The portal north leads to the Mountains."],
    },
  },
  {
    number: 2,
    map: "Mountains",
    title: "Chapter 2: Echoes in the Peaks",
    guide: "Warden Bo",
    enemy: "bat",
    huntCount: 6,
    boss: { kind: "bat", name: "Bat Matriarch", hp: 32 },
    reward: { skill: "dash", text: "Skill unlocked: Dash (press Shift)" },
    lines: {
      talk: [
        "You made it up here! The bats keep evicting our entries.",
        "Drive six of them away. Your Sword Beam reaches far.",
      ],
      hunt: ["Six bats. Aim the beam with your facing direction."],
      boss: ["The Matriarch comes! Keep moving."],
      done: ["The peaks are quiet. The portal leads down to the Badlands."],
    },
  },
  {
    number: 3,
    map: "Badlands",
    title: "Chapter 3: The Expired Sands",
    guide: "Scout Cy",
    enemy: "scorpion",
    huntCount: 7,
    boss: { kind: "scorpion", name: "Scorpion Emperor", hp: 44 },
    reward: { skill: "whirlwind", text: "Skill unlocked: Whirlwind (press C)" },
    lines: {
      talk: [
        "Keeper! Everything here expires before its time.",
        "Seven scorpions guard the wastes. Dash past their stings!",
      ],
      hunt: ["Seven scorpions left to beat. Shift to dash."],
      boss: ["The Emperor himself! This is it!"],
      done: ["Every land remembers. You are a true Cache Keeper! Step into the portal to finish."],
    },
  },
];

export const chapterForMap = (map) => CHAPTERS.find((chapter) => chapter.map === map);
export const chapterByNumber = (number) => CHAPTERS.find((chapter) => chapter.number === number);
