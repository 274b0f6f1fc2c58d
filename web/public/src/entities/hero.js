// The player's character: movement, sword, unlockable skills, taking damage.
import { k } from "../engine.js";
import { COLORS, UP_KEYS, DOWN_KEYS, LEFT_KEYS, RIGHT_KEYS } from "../ui.js";

const SWORD = { cooldown: 0.3, reach: 24, radius: 30 };
const BEAM = { cooldown: 0.6, speed: 380, lifetime: 0.8, radius: 16 };
const DASH = { cooldown: 1.2, duration: 0.18, speedFactor: 3.2 };
const WHIRLWIND = { cooldown: 4, radius: 84 };
const INVULNERABLE_AFTER_HIT = 0.8;

function readDirection() {
  const x = (k.isKeyDown(RIGHT_KEYS) ? 1 : 0) - (k.isKeyDown(LEFT_KEYS) ? 1 : 0);
  const y = (k.isKeyDown(DOWN_KEYS) ? 1 : 0) - (k.isKeyDown(UP_KEYS) ? 1 : 0);
  return k.vec2(x, y);
}

/** Damages every enemy under `parent` within `radius` of `center`; returns how many were hit. */
function strike(parent, center, radius, damage) {
  let hits = 0;
  for (const enemy of parent.get("enemy")) {
    if (enemy.pos.dist(center) < radius + enemy.radius) {
      enemy.takeDamage(damage, enemy.pos.sub(center));
      hits += 1;
    }
  }
  return hits;
}

/** A short-lived circle that fades out: the visible part of a sword swing or whirlwind. */
function addFlash(parent, center, radius, color) {
  const flash = parent.add([
    k.circle(radius),
    k.pos(center),
    k.color(color),
    k.opacity(0.6),
    k.anchor("center"),
    k.z(20),
  ]);
  flash.onUpdate(() => {
    flash.opacity -= k.dt() * 4;
    if (flash.opacity <= 0) flash.destroy();
  });
}

function addBeam(parent, from, direction, damage) {
  const beam = parent.add([
    k.rect(18, 6, { radius: 3 }),
    k.pos(from),
    k.anchor("center"),
    k.rotate(direction.angle()),
    k.color(COLORS.gold),
    k.z(15),
  ]);
  let age = 0;
  beam.onUpdate(() => {
    age += k.dt();
    beam.pos = beam.pos.add(direction.scale(BEAM.speed * k.dt()));
    if (strike(parent, beam.pos, BEAM.radius, damage) > 0 || age > BEAM.lifetime) beam.destroy();
  });
}

/**
 * Adds the hero under `parent`. `player` is the player document (stats and unlocked skills are
 * read live, so a skill unlocked mid-scene works at once). `onDeath` runs once when hp hits 0.
 */
export function addHero(parent, { pos, player, hp, onDeath }) {
  const hero = parent.add([
    k.sprite("hero", { anim: "idle" }),
    k.pos(pos.x, pos.y),
    k.anchor("center"),
    k.area({ scale: k.vec2(0.5, 0.55), collisionIgnore: ["enemy"] }),
    k.body(),
    k.opacity(1),
    k.z(10),
    "hero",
    { hp, facing: k.vec2(1, 0) },
  ]);
  let dashLeft = 0;
  let invulnerableLeft = 0;
  const damage = () => player.stats.attack;
  const skill = (name) => () => player.skillUnlocked[name];
  const actions = [
    { key: "space", unlocked: () => true, cooldown: SWORD.cooldown, run: swingSword },
    { key: "x", unlocked: skill("swordBeam"), cooldown: BEAM.cooldown, run: fireBeam },
    { key: "shift", unlocked: skill("dash"), cooldown: DASH.cooldown, run: () => (dashLeft = DASH.duration) },
    { key: "c", unlocked: skill("whirlwind"), cooldown: WHIRLWIND.cooldown, run: spinWhirlwind },
  ].map((action) => ({ ...action, waitLeft: 0 }));

  function swingSword() {
    const center = hero.pos.add(hero.facing.scale(SWORD.reach));
    addFlash(parent, center, SWORD.radius * 0.7, COLORS.paper);
    strike(parent, center, SWORD.radius, damage());
  }

  function fireBeam() {
    addBeam(parent, hero.pos, hero.facing, damage());
  }

  function spinWhirlwind() {
    addFlash(parent, hero.pos, WHIRLWIND.radius, COLORS.good);
    strike(parent, hero.pos, WHIRLWIND.radius, damage() * 2);
  }

  function walk() {
    const direction = readDirection();
    const moving = direction.x !== 0 || direction.y !== 0;
    if (moving) {
      hero.facing = direction.unit();
      if (direction.x !== 0) hero.flipX = direction.x < 0;
      hero.move(hero.facing.scale(player.stats.speed * (dashLeft > 0 ? DASH.speedFactor : 1)));
    }
    const anim = moving ? "move" : "idle";
    if (hero.getCurAnim()?.name !== anim) hero.play(anim);
  }

  hero.onUpdate(() => {
    if (hero.hp <= 0) return;
    const dt = k.dt();
    for (const action of actions) action.waitLeft = Math.max(0, action.waitLeft - dt);
    dashLeft = Math.max(0, dashLeft - dt);
    invulnerableLeft = Math.max(0, invulnerableLeft - dt);
    hero.opacity = invulnerableLeft > 0 && Math.floor(k.time() * 12) % 2 ? 0.35 : 1;
    walk();
  });

  // Registered on the parent (the scene's world), so pausing the world also silences these keys.
  for (const action of actions) {
    parent.onKeyPress(action.key, () => {
      if (hero.hp <= 0 || !action.unlocked() || action.waitLeft > 0) return;
      action.waitLeft = action.cooldown;
      action.run();
    });
  }

  /** Contact damage from enemies; ignored while blinking after a hit or dashing. */
  hero.takeDamage = (amount) => {
    if (hero.hp <= 0 || invulnerableLeft > 0 || dashLeft > 0) return;
    hero.hp = Math.max(0, hero.hp - amount);
    invulnerableLeft = INVULNERABLE_AFTER_HIT;
    k.shake(3);
    if (hero.hp === 0) onDeath();
  };

  return hero;
}
