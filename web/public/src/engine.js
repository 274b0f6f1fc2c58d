// The single KAPLAY context. Every module imports `k` from here instead of relying on globals.
import kaplay from "/vendor/kaplay/kaplay.mjs";

export const WIDTH = 640;
export const HEIGHT = 360;

export const k = kaplay({
  width: WIDTH,
  height: HEIGHT,
  letterbox: true,
  stretch: true,
  crisp: true,
  global: false,
  debug: false,
  pixelDensity: 1, // higher densities cost too much on software-rendered WebGL
  maxFPS: 60,
  background: [11, 13, 22],
  font: "monospace",
});
