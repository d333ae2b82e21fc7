/**
 * The topic tree as a radix tree (roles/broker/topic_nodes.ts), checked
 * against a plain list of names: random topics made and forgotten, and
 * after each step the tree's shape (every node but the root a topic's or a
 * branch to two or more, each path read from a live topic's name), its
 * counts, its counted bytes, and what its walks meet, resumable walks
 * included while the tree changes under them.
 */
import assert from "node:assert/strict";
import { topicSegments } from "../clients/contracts/mod.ts";
import {
  CHILDREN_BYTES,
  NODE_BYTES,
  type Topic,
  TOPIC_BYTES,
  type TopicNode,
  TopicTree,
} from "../roles/broker/topics.ts";
import { TopicWalk } from "../roles/broker/topic_walk.ts";

/** A small seeded generator (mulberry32): the same steps on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Short segments and long ones (13 characters or more: V8 slices those out of their string).
const SEGMENTS = ["a", "b", "ab", "abc", "x", "temperature_sensor_01", "temperature_sensor_02"];

function randomName(rand: () => number): string {
  const depth = 1 + Math.floor(rand() * 5);
  let name = "";
  for (let i = 0; i < depth; i++) name += "/" + SEGMENTS[Math.floor(rand() * SEGMENTS.length)];
  return name;
}

function randomPattern(rand: () => number): string[] {
  const depth = Math.floor(rand() * 4);
  const out: string[] = [];
  for (let i = 0; i < depth; i++) {
    out.push(rand() < 0.3 ? "+" : SEGMENTS[Math.floor(rand() * SEGMENTS.length)]);
  }
  return out;
}

/** Whether a pattern's segments cover a topic (the topic, or one in its subtree). */
function covers(pattern: string[], name: string, exact: boolean): boolean {
  const segments = topicSegments(name);
  if (exact ? segments.length !== pattern.length : segments.length < pattern.length) return false;
  return pattern.every((p, i) => p === "+" || p === segments[i]);
}

/** Checks the tree's shape, counts and bytes; returns its nodes (root first). */
function check(t: TopicTree, retained: Set<string>): TopicNode[] {
  const nodes: TopicNode[] = [];
  let bytes = 0;
  for (const topic of t.values()) bytes += TOPIC_BYTES + topic.name.length;
  const visit = (node: TopicNode): [number, number] => {
    nodes.push(node);
    const path = node.path;
    if (node !== t.root) {
      assert.ok(node.topic !== undefined || node.children!.size >= 2, `${path} leads somewhere`);
      assert.equal(t.peek(node.name)?.name, node.name, `${path} reads a live topic's name`);
      assert.ok(node.name === path || node.name.startsWith(path + "/"), `${path} in ${node.name}`);
    }
    if (node.topic !== undefined) assert.equal(node.topic.name, path);
    let topics = node.topic === undefined ? 0 : 1;
    let kept = node.topic !== undefined && retained.has(node.topic.name) ? 1 : 0;
    if (node.children !== undefined) {
      assert.ok(node.children.size > 0, `${path}: no empty map`);
      bytes += CHILDREN_BYTES;
      for (const [key, child] of node.children) {
        assert.equal(child.parent, node);
        const edge = child.name.slice(node.end + 1, child.end);
        assert.equal(edge.split("/")[0], key, `${child.path} found by its first segment`);
        bytes += NODE_BYTES + key.length;
        const [n, r] = visit(child);
        topics += n;
        kept += r;
      }
    }
    assert.equal(node.topics, topics, `${path} counts its topics`);
    assert.equal(node.retained, kept, `${path} counts its retained values`);
    return [topics, kept];
  };
  visit(t.root);
  assert.equal(t.bytes, bytes, "the counted bytes are the nodes' and the topics'");
  return nodes;
}

function checkWalks(t: TopicTree, names: Set<string>, retained: Set<string>, pattern: string[]) {
  const met: string[] = [];
  t.walk(pattern, (topic) => void met.push(topic.name));
  const want = [...names].filter((n) => covers(pattern, n, false));
  assert.deepEqual([...met].sort(), want.sort(), `walk of /${pattern.join("/")}`);
  // Parents before children.
  for (let i = 0; i < met.length; i++) {
    for (let j = 0; j < i; j++) assert.ok(!met[j].startsWith(met[i] + "/"), "pre-order");
  }
  // The nodes the pattern names: their counts, and the topics it names exactly.
  const ends = new TopicWalk(t.root, pattern, (n) => n.topics === 0, true);
  let count = 0;
  const exact: string[] = [];
  for (let n = ends.next({ left: Infinity }); n !== undefined; n = ends.next({ left: Infinity })) {
    count += n.topics;
    if (!ends.inside && n.topic !== undefined) exact.push(n.topic.name);
  }
  assert.equal(count, want.length, `count of /${pattern.join("/")}`);
  assert.deepEqual(exact.sort(), want.filter((n) => covers(pattern, n, true)).sort());
  const plus = pattern.indexOf("+");
  const prefix = plus < 0 ? pattern : pattern.slice(0, plus);
  assert.equal(
    t.retainedUnder(pattern),
    [...retained].some((n) => covers(prefix, n, false)),
    `retained under /${pattern.join("/")}`,
  );
}

Deno.test("topic tree: random topics made and forgotten, against a list of names", () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const rand = random(seed);
    const t = new TopicTree();
    const names = new Set<string>();
    const retained = new Set<string>();
    for (let step = 0; step < 600; step++) {
      const r = rand();
      if (r < 0.55 || names.size === 0) {
        const name = rand() < 0.03 ? "/" : randomName(rand);
        if (names.has(name)) continue;
        t.create(name, step);
        names.add(name);
      } else if (r < 0.8) {
        const name = [...names][Math.floor(rand() * names.size)];
        const topic = t.peek(name)!;
        if (retained.delete(name)) t.retainedChanged(topic, -1);
        t.forget(topic);
        names.delete(name);
      } else {
        const name = [...names][Math.floor(rand() * names.size)];
        const topic = t.peek(name)!;
        if (retained.has(name)) {
          retained.delete(name);
          t.retainedChanged(topic, -1);
        } else {
          retained.add(name);
          t.retainedChanged(topic, 1);
        }
      }
      check(t, retained);
      checkWalks(t, names, retained, randomPattern(rand));
    }
    for (const name of names) {
      const topic = t.peek(name)!;
      if (retained.delete(name)) t.retainedChanged(topic, -1);
      t.forget(topic);
    }
    assert.equal(t.bytes, 0);
    assert.equal(t.root.children, undefined);
  }
});

Deno.test("topic tree: a walk resumed while edges are split and merged meets each topic there throughout once", () => {
  for (const seed of [7, 8, 9, 10, 11, 12]) {
    const rand = random(seed);
    const t = new TopicTree();
    const names = new Set<string>();
    for (let i = 0; i < 80; i++) {
      const name = randomName(rand);
      if (!names.has(name)) t.create(name, 0), names.add(name);
    }
    const pattern = randomPattern(rand);
    const walk = new TopicWalk(t.root, pattern, (n) => n.topics === 0);
    const throughout = new Set([...names].filter((n) => covers(pattern, n, false)));
    const met = new Set<string>();
    const forgotten = new Set<Topic>();
    while (!walk.done) {
      const node = walk.next({ left: 1 });
      if (node !== undefined) {
        const name = node.topic!.name;
        assert.ok(!met.has(name), `${name} met once`);
        assert.equal(t.peek(name), node.topic, `${name} exists when met`);
        assert.ok(covers(pattern, name, false), `${name} is covered`);
        met.add(name);
      }
      // Change the tree between steps: new topics (splitting edges), forgotten ones (merging).
      if (rand() < 0.5) {
        const name = randomName(rand);
        if (!names.has(name)) t.create(name, 0), names.add(name);
      } else if (names.size > 0) {
        const name = [...names][Math.floor(rand() * names.size)];
        const topic = t.peek(name)!;
        t.forget(topic);
        forgotten.add(topic);
        names.delete(name);
        throughout.delete(name);
      }
    }
    for (const name of throughout) assert.ok(met.has(name), `${name}, there throughout, was met`);
    check(t, new Set());
  }
});
