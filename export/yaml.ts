/**
 * YAML out, for compose and Kubernetes: plain data with comments above the
 * file and above chosen keys, short lists of scalars on one line.
 */
import { Document, isMap, isScalar, visit } from "yaml";

/** A `# comment` block: each line prefixed with a space, as `yaml` writes it after `#`. */
export function commentBlock(lines: readonly string[]): string {
  return lines.map((l) => l === "" ? "" : ` ${l}`).join("\n");
}

/** A YAML document: `data` with `header` lines above it and `keyComments` above keys of a map. */
export function yamlDocument(
  data: unknown,
  options: {
    header?: readonly string[];
    /** Comments above keys of the map at `path` (e.g. `["services"]`), by key. */
    keyComments?: { path: string[]; comments: Map<string, readonly string[]> };
  } = {},
): Document {
  // YAML 1.1, as compose (PyYAML) and Kubernetes read it: "no" and "on" are quoted.
  // Objects shared between places (a pod's labels and its selector) are written out
  // twice, not as anchors: people and some tools read aliases badly.
  const doc = new Document(data, { version: "1.1", aliasDuplicateObjects: false });
  if (options.header !== undefined && options.header.length > 0) {
    doc.commentBefore = commentBlock(options.header);
  }
  const keyed = options.keyComments;
  if (keyed !== undefined) {
    const map = keyed.path.length === 0 ? doc.contents : doc.getIn(keyed.path, true);
    if (isMap(map)) {
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue;
        const lines = keyed.comments.get(String(pair.key.value));
        if (lines !== undefined && lines.length > 0) pair.key.commentBefore = commentBlock(lines);
      }
    }
  }
  // A command line or a list of ports reads best on one line.
  visit(doc, {
    Seq(_, node) {
      if (node.items.length > 0 && node.items.every(isScalar)) node.flow = true;
    },
  });
  return doc;
}

/** The text of one or more documents (`---` between them). */
export function yamlText(docs: Document[]): string {
  return docs.map((doc) => doc.toString({ lineWidth: 0, flowCollectionPadding: false }))
    .join("---\n");
}
