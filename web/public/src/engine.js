// The single KAPLAY context. Every module imports `k` from here instead of relying on globals.
import kaplay from "/vendor/kaplay/kaplay.mjs";

export const WIDTH = 640;
export const HEIGHT = 360;

export const k = kaplay({
  width: WIDTH,
  height: HEIGHT,
  // The canvas keeps 640x360 real pixels and CSS scales it up (index.html): on software-rendered
  // WebGL, filling a full-window drawing buffer every frame costs more than the whole game.
  crisp: true,
  global: false,
  debug: false,
  pixelDensity: 1, // higher densities cost too much on software-rendered WebGL
  maxFPS: 60,
  background: [11, 13, 22],
  font: "monospace",
});
