/** Values as applications publish them, for the broker's value tests. */

/** What applications publish: each shape by name. */
export const SHAPES: Record<string, unknown> = {
  string: "plain text value",
  object: { id: 7, name: "sensor-12", ok: true, temp: 21.5, tags: ["a", "b"], none: null },
  nested: { a: [1, [2, [3, { b: null, c: [[[]]] }]]], d: { e: { f: [true, false, -0.5] } } },
  unicode: { text: "héllo wörld ✓ 😀 日本語", "clé": 'line\u2028sep \\ " \n\t\u0001' },
  numbers: [0, -1, 1.5, -2.25e-10, 9007199254740991, -9007199254740991, 1e300],
  number: 42,
  true: true,
  false: false,
  empty: "",
};
