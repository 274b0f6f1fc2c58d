// The three maps: deterministic layouts, painted once into background sprites, plus their colliders.
import { k, WIDTH, HEIGHT } from "./engine.js";
import * as art from "./art.js";
import { paintArt } from "./sprites.js";

export const TILE = 32;
const COLS = 40;
const ROWS = 28;
export const WORLD_WIDTH = COLS * TILE;
export const WORLD_HEIGHT = ROWS * TILE;
export const MAP_NAMES = ["Grassland", "Mountains", "Badlands"];

const tileCenter = (col, row) => ({ x: (col + 0.5) * TILE, y: (row + 0.5) * TILE });
export const SPAWN = tileCenter(20, 16);
export const NPC_SPOT = tileCenter(23, 13);
export const PORTAL_SPOT = tileCenter(20, 8);

const MAP_STYLES = {
  Grassland: {
    ground: "#4f9b45",
    speckles: ["#5fae52", "#3f8639"],
    obstacle: art.TREE,
    decorations: [art.FLOWER, art.TUFT, art.TUFT],
    seed: 7,
  },
  Mountains: {
    ground: "#6f7a8c",
    speckles: ["#7d889a", "#5f6a7b", "#c9d3dd"],
    obstacle: art.BOULDER,
    decorations: [art.SNOW, art.PEBBLE],
    seed: 19,
  },
  Badlands: {
    ground: "#c98c4b",
    speckles: ["#d69d5c", "#b27a3d"],
    obstacle: art.CACTUS,
    decorations: [art.CRACK, art.BONE, art.PEBBLE],
    seed: 31,
  },
};

/** Small seeded PRNG (mulberry32) so every player sees the same map. */
function seededRandom(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const isBorder = (col, row) => col === 0 || row === 0 || col === COLS - 1 || row === ROWS - 1;
// Spawn, NPC and portal stay reachable: no obstacles in the middle of the map.
const isClearing = (col, row) => Math.abs(col - 20) <= 6 && Math.abs(row - 12) <= 6;

const layouts = new Map();

/** Obstacle and decoration tiles of a map, computed once and cached. */
function mapLayout(name) {
  if (layouts.has(name)) return layouts.get(name);
  const style = MAP_STYLES[name];
  const random = seededRandom(style.seed);
  const pick = (items) => items[Math.floor(random() * items.length)];
  const blocked = new Set();
  const obstacles = [];
  const addObstacle = (col, row) => {
    const key = `${col},${row}`;
    if (blocked.has(key) || isClearing(col, row) || col < 0 || row < 0 || col >= COLS || row >= ROWS) return;
    blocked.add(key);
    obstacles.push({ col, row });
  };
  for (let col = 0; col < COLS; col++) {
    for (let row = 0; row < ROWS; row++) if (isBorder(col, row)) addObstacle(col, row);
  }
  for (let i = 0; i < 28; i++) {
    const col = 2 + Math.floor(random() * (COLS - 4));
    const row = 2 + Math.floor(random() * (ROWS - 4));
    addObstacle(col, row);
    if (random() < 0.5) addObstacle(col + 1, row);
    if (random() < 0.3) addObstacle(col, row + 1);
  }
  const decorations = Array.from({ length: 90 }, () => ({
    x: random() * (WORLD_WIDTH - 16),
    y: random() * (WORLD_HEIGHT - 16),
    art: pick(style.decorations),
  }));
  const layout = { obstacles, decorations, blocked, random };
  layouts.set(name, layout);
  return layout;
}

function paintBackground(name) {
  const style = MAP_STYLES[name];
  const { obstacles, decorations, random } = mapLayout(name);
  const canvas = document.createElement("canvas");
  canvas.width = WORLD_WIDTH;
  canvas.height = WORLD_HEIGHT;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = style.ground;
  ctx.fillRect(0, 0, WORLD_WIDTH, WORLD_HEIGHT);
  for (let i = 0; i < 5000; i++) {
    ctx.fillStyle = style.speckles[i % style.speckles.length];
    ctx.fillRect(Math.floor((random() * WORLD_WIDTH) / 2) * 2, Math.floor((random() * WORLD_HEIGHT) / 2) * 2, 2, 2);
  }
  for (const decoration of decorations) paintArt(ctx, decoration.art, decoration.x, decoration.y);
  for (const { col, row } of obstacles) paintArt(ctx, style.obstacle, col * TILE, row * TILE);
  return canvas;
}

export function loadMapSprites() {
  for (const name of MAP_NAMES) k.loadSprite(`map-${name}`, paintBackground(name));
}

/** Adds a map's background and its solid obstacles under `parent`. */
export function buildMap(parent, name) {
  parent.add([k.sprite(`map-${name}`), k.pos(0, 0), k.z(-100)]);
  const inset = 5;
  for (const { col, row } of mapLayout(name).obstacles) {
    parent.add([
      k.pos(col * TILE + inset, row * TILE + inset),
      k.area({ shape: new k.Rect(k.vec2(0, 0), TILE - 2 * inset, TILE - 2 * inset) }),
      k.body({ isStatic: true }),
      "wall",
    ]);
  }
}

/** A random walkable point at least `minDistance` pixels from `awayFrom`. */
export function randomFreeSpot(name, awayFrom, minDistance) {
  const { blocked } = mapLayout(name);
  for (let attempt = 0; attempt < 200; attempt++) {
    const col = 1 + Math.floor(Math.random() * (COLS - 2));
    const row = 1 + Math.floor(Math.random() * (ROWS - 2));
    const spot = tileCenter(col, row);
    const far = Math.hypot(spot.x - awayFrom.x, spot.y - awayFrom.y) >= minDistance;
    if (!blocked.has(`${col},${row}`) && far) return spot;
  }
  return tileCenter(2, 2);
}

/** Keeps a point inside the walkable part of the map. */
export function clampToWorld({ x, y }) {
  const margin = TILE * 1.5;
  return {
    x: Math.min(Math.max(x, margin), WORLD_WIDTH - margin),
    y: Math.min(Math.max(y, margin), WORLD_HEIGHT - margin),
  };
}

/** Keeps the camera on the hero without showing anything past the map's edges. */
export function followWithCamera(hero) {
  k.onUpdate(() => {
    const x = Math.min(Math.max(hero.pos.x, WIDTH / 2), WORLD_WIDTH - WIDTH / 2);
    const y = Math.min(Math.max(hero.pos.y, HEIGHT / 2), WORLD_HEIGHT - HEIGHT / 2);
    k.setCamPos(x, y);
  });
}
