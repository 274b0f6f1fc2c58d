// Enemies and bosses: chase the hero when near, wander otherwise, hurt on contact.
import { k } from "../engine.js";

export const ENEMY_KINDS = {
  // crownAt: where a boss's crown sits on its head, in sprite pixels from the centre (facing right).
  slime: { sprite: "slime", hp: 3, speed: 60, damage: 1, points: 10, xp: 10, flies: false, crownAt: [0, -5] },
  bat: { sprite: "bat", hp: 2, speed: 95, damage: 1, points: 15, xp: 12, flies: true, crownAt: [0, -3] },
  scorpion: { sprite: "scorpion", hp: 5, speed: 72, damage: 2, points: 25, xp: 20, flies: false, crownAt: [-5, 3] },
};

const BOSS_SCALE = 2.5;
const BOSS_CHARGE = { every: 3.5, duration: 0.7, speedFactor: 2.8 };
const KNOCKBACK = 240;

function wanderDirection() {
  const angle = Math.random() * Math.PI * 2;
  return k.vec2(Math.cos(angle), Math.sin(angle));
}

/**
 * Adds one enemy under `parent`. `toughness` >= 1 scales hp and speed (survivor waves);
 * `boss` ({ name, hp }) makes a big crowned enemy that charges now and then.
 * `onDefeat(enemy)` runs when it dies.
 */
export function addEnemy(parent, { kind, pos, target, boss = null, toughness = 1, aggroRange = 230, onDefeat }) {
  const spec = ENEMY_KINDS[kind];
  const scale = boss ? BOSS_SCALE : 1;
  const maxHp = boss ? boss.hp : Math.ceil(spec.hp * toughness);
  const speed = spec.speed * Math.min(1.6, toughness ** 0.5) * (boss ? 0.8 : 1);
  const enemy = parent.add([
    k.sprite(spec.sprite, { anim: "move" }),
    k.pos(pos.x, pos.y),
    k.anchor("center"),
    k.scale(scale),
    k.color(255, 255, 255),
    k.z(boss ? 8 : 5),
    ...(spec.flies ? [] : [k.area({ scale: k.vec2(0.6, 0.5), collisionIgnore: ["enemy", "hero"] }), k.body()]),
    "enemy",
    { kind, boss, hp: maxHp, maxHp, radius: 11 * scale, damage: spec.damage * (boss ? 2 : 1) },
  ]);
  const [crownX, crownY] = spec.crownAt;
  const crown = boss ? enemy.add([k.sprite("crown"), k.pos(crownX, crownY), k.anchor("bot"), k.scale(0.5)]) : null;

  let knockback = k.vec2(0, 0);
  let flashLeft = 0;
  let wander = wanderDirection();
  let wanderLeft = 2;
  let chargeClock = 0;

  function velocity() {
    const toTarget = target.pos.sub(enemy.pos);
    if (toTarget.len() > aggroRange || target.hp <= 0) return wander.scale(speed * 0.4);
    const charging = boss && chargeClock % BOSS_CHARGE.every > BOSS_CHARGE.every - BOSS_CHARGE.duration;
    return toTarget.unit().scale(speed * (charging ? BOSS_CHARGE.speedFactor : 1));
  }

  enemy.onUpdate(() => {
    const dt = k.dt();
    chargeClock += dt;
    wanderLeft -= dt;
    if (wanderLeft <= 0) [wander, wanderLeft] = [wanderDirection(), 2];
    flashLeft = Math.max(0, flashLeft - dt);
    enemy.color = flashLeft > 0 ? k.rgb(255, 90, 90) : k.rgb(255, 255, 255);
    const move = velocity().add(knockback);
    knockback = knockback.scale(Math.max(0, 1 - dt * 8));
    enemy.move(move);
    if (move.x !== 0) enemy.flipX = move.x < 0;
    if (crown) crown.pos.x = enemy.flipX ? -crownX : crownX;
    if (enemy.pos.dist(target.pos) < enemy.radius + 12) target.takeDamage(enemy.damage);
  });

  enemy.takeDamage = (amount, away) => {
    if (enemy.hp <= 0) return;
    enemy.hp -= amount;
    flashLeft = 0.12;
    if (away.len() > 0) knockback = away.unit().scale(boss ? KNOCKBACK / 3 : KNOCKBACK);
    if (enemy.hp <= 0) {
      enemy.destroy();
      onDefeat?.(enemy);
    }
  };

  return enemy;
}
