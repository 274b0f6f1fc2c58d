// Cache Quest's own pixel art, as data: one string per row, one character per pixel.
// "." is transparent; every other character is a colour from PALETTE.

export const PALETTE = {
  k: "#1a1c2c", // outline
  w: "#f4f4f4",
  s: "#f2c39b", // skin
  r: "#b13e53",
  o: "#ef7d57",
  y: "#ffcd4a",
  g: "#38b764",
  l: "#a7f070",
  G: "#257179",
  b: "#3b5dc9",
  B: "#29366f",
  p: "#8e5fb0",
  v: "#6d3f8f",
  n: "#8b5a2b",
  e: "#94b0c2",
  E: "#566c86",
  d: "#333c57",
  T: "#9a6434",
};

export const HERO = [
  "................",
  ".....kkkkkk.....",
  "....kbbbbbbk....",
  "...kbbbbbbbbk...",
  "...kbssssssbk...",
  "...kskksskksk...",
  "...kssssssssk...",
  "....kssrrssk....",
  ".....kkkkkk.....",
  "...krrrrrrrrk...",
  "..ksrrryyrrrsk..",
  "..ksrrrrrrrrsk..",
  "...kkBBBBBBkk...",
  "....kBBkkBBk....",
  "...knnk..knnk...",
  "...kkkk..kkkk...",
];

export const ELDER = [
  ".......kk.......",
  "......kppk......",
  ".....kppppk.....",
  "....kppppppk....",
  "...kkkkkkkkkk...",
  "....kssssssk....",
  "....kskssksk....",
  "....kwwwwwwk....",
  "...kpwwwwwwpk...",
  "..kppwwwwwwppk..",
  "..kpppwwwwpppk..",
  "..kspppwwpppsk..",
  "...kppppppppk...",
  "...kppppppppk...",
  "...kppppppppk...",
  "....kkkkkkkk....",
];

export const SLIME = [
  "................",
  "................",
  "................",
  "................",
  "................",
  "......kkkk......",
  "....kkllllkk....",
  "...klllllgllk...",
  "..klgggggggggk..",
  "..kggwkggwkggk..",
  "..kggkkggkkggk..",
  ".kggggggggggggk.",
  ".kgggggkkgggggk.",
  ".kGggggggggggGk.",
  "..kGGGGGGGGGGk..",
  "...kkkkkkkkkk...",
];

export const BAT = [
  "................",
  "................",
  "................",
  ".k............k.",
  ".kk..k....k..kk.",
  ".kvk.kk..kk.kvk.",
  ".kvvkkvkkvkkvvk.",
  ".kvvvkvvvvkvvvk.",
  ".kvvvvrvvrvvvvk.",
  ".kvvvvvvvvvvvvk.",
  "..kvvvkwwkvvvk..",
  "...kvk.kk.kvk...",
  "....k......k....",
  "................",
  "................",
  "................",
];

export const SCORPION = [
  "................",
  "..........kk....",
  ".........kook...",
  "..........kok...",
  "...........kok..",
  "...........kok..",
  "..kk......kook..",
  ".kook....koook..",
  ".kokkkkkkoook...",
  "..kkoooooook....",
  "...kowoowook....",
  "..kooooooooook..",
  ".kk.kokokok.kk..",
  ".k..k.k.k.k..k..",
  "................",
  "................",
];

export const CROWN = [
  "..k....kk....k..",
  ".kyk..kyyk..kyk.",
  ".kyykkyyyykkyyk.",
  ".kyyyyyryyyyyyk.",
  ".kyyyyyyyyyyyyk.",
  ".kkkkkkkkkkkkkk.",
];

export const TREE = [
  "......kkkk......",
  "....kkggggkk....",
  "...kggllgggGk...",
  "..kgglllgggGGk..",
  "..kglllggggGGk..",
  ".kggllggggggGGk.",
  ".kgggggggggGGGk.",
  ".kGggggggggGGGk.",
  "..kGGggggGGGGk..",
  "...kGGGGGGGGk...",
  "....kkknnkkk....",
  "......knnk......",
  "......knnk......",
  ".....knnnnk.....",
  ".....kkkkkk.....",
  "................",
];

export const BOULDER = [
  "................",
  "................",
  "................",
  ".....kkkkk......",
  "...kkeeeeekk....",
  "..keeweeeeeEk...",
  ".keewweeeeeEEk..",
  ".keeeeeeeeEEEk..",
  "keeeeeeeeeeEEEk.",
  "kEeeeeeeeeEEEEk.",
  "kEEeeeeeEEEEEdk.",
  ".kEEEEEEEEEEddk.",
  "..kkddddddddkk..",
  "....kkkkkkkk....",
  "................",
  "................",
];

export const CACTUS = [
  "......kkk.......",
  ".....kgggk......",
  ".....kglgk......",
  ".....kglgk.kk...",
  ".kk..kglgk.kgk..",
  "kggk.kglgk.kgk..",
  "kglk.kglgkkkgk..",
  "kglkkkglggggGk..",
  "kglggggglGGGk...",
  ".kgGGGGglgk.....",
  "..kkkkkglgk.....",
  ".....kglgk......",
  ".....kglGk......",
  ".....kgGGk......",
  "....kkkkkkk.....",
  "................",
];

export const HEART = [".kk.kk..", "krrkrrk.", "krrrrrk.", ".krrrk..", "..krk...", "...k...."];

// Small ground decorations, painted into map backgrounds (they never collide).
export const FLOWER = ["........", "..w.w...", ".wywyw..", "..wyw...", "...g....", "..gg.g..", "...gg...", "........"];

export const TUFT = ["........", "........", "..l..l..", ".lG.lG..", ".Gl.Gl.l", "..G..GlG", "........", "........"];

export const PEBBLE = ["........", "........", "...kk...", "..keEk..", "..kEEk..", "...kk...", "........", "........"];

export const SNOW = ["........", "..ww....", ".wwww.w.", "..www.ww", "........", "....ww..", "...www..", "........"];

export const CRACK = ["........", ".T......", "..T..T..", "...TT...", "...T....", "..T.....", "........", "........"];

export const BONE = ["........", "........", ".w....w.", "..wwww..", ".w....w.", "........", "........", "........"];
