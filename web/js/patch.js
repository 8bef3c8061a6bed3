// RFC 6902 JSON Patch on a canvas document, as the hub applies it (docs/protocol.md,
// "Patches"): `remove` of an entry that is already gone is a no-op, `add` of an
// existing id replaces it; anything else that cannot apply throws.

function unescape(token) {
  return token.replace(/~1/g, "/").replace(/~0/g, "~");
}

export function escapeId(id) {
  return String(id).replace(/~/g, "~0").replace(/\//g, "~1");
}

function parse(pointer) {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new Error(`bad JSON pointer ${pointer}`);
  return pointer.slice(1).split("/").map(unescape);
}

function parentOf(doc, tokens) {
  let node = doc;
  for (const token of tokens.slice(0, -1)) {
    if (node === null || typeof node !== "object" || !(token in node)) {
      throw new Error(`no such path /${tokens.join("/")}`);
    }
    node = node[token];
  }
  return [node, tokens[tokens.length - 1]];
}

function get(doc, pointer) {
  let node = doc;
  for (const token of parse(pointer)) {
    if (node === null || typeof node !== "object" || !(token in node)) {
      throw new Error(`no such path ${pointer}`);
    }
    node = node[token];
  }
  return node;
}

function put(doc, pointer, value, replacing) {
  const [parent, key] = parentOf(doc, parse(pointer));
  if (Array.isArray(parent)) {
    const index = key === "-" ? parent.length : Number(key);
    if (replacing) parent[index] = value;
    else parent.splice(index, 0, value);
  } else {
    if (replacing && !(key in parent)) throw new Error(`nothing to replace at ${pointer}`);
    parent[key] = value;
  }
}

function drop(doc, pointer) {
  const tokens = parse(pointer);
  let parent;
  let key;
  try {
    [parent, key] = parentOf(doc, tokens);
  } catch (error) {
    if (tokens.length === 2) return; // an entry whose section is missing: gone already
    throw error;
  }
  if (Array.isArray(parent)) parent.splice(Number(key), 1);
  else if (key in parent) delete parent[key];
  else if (tokens.length !== 2) throw new Error(`nothing to remove at ${pointer}`);
}

const clone = (value) => (value === undefined ? value : structuredClone(value));

// An op inside an entry (`/elements/<id>/points/0`) changes a copy of that entry, so
// an entry object is never changed once made: a renderer may keep its drawing for as
// long as the entry is the same object, and documents may share unchanged entries.
function copyOnWrite(doc, pointer) {
  const tokens = parse(pointer);
  if (tokens.length < 3) return;
  const section = doc[tokens[0]];
  if (section && typeof section === "object" && tokens[1] in section) {
    section[tokens[1]] = structuredClone(section[tokens[1]]);
  }
}

/**
 * Apply `ops` to `doc` in place. Sections are changed in place but entries never
 * are (see copyOnWrite): a copy of the sections is enough to keep a document.
 */
export function applyOps(doc, ops) {
  for (const op of ops) {
    const tokens = parse(op.path);
    if (tokens.length >= 1 && !(tokens[0] in doc)) doc[tokens[0]] = {};
    copyOnWrite(doc, op.path);
    if (op.op === "move") copyOnWrite(doc, op.from);
    switch (op.op) {
      case "add":
        put(doc, op.path, clone(op.value), false);
        break;
      case "replace":
        put(doc, op.path, clone(op.value), true);
        break;
      case "remove":
        drop(doc, op.path);
        break;
      case "copy":
        put(doc, op.path, clone(get(doc, op.from)), false);
        break;
      case "move": {
        const value = get(doc, op.from);
        drop(doc, op.from);
        put(doc, op.path, value, false);
        break;
      }
      case "test":
        if (JSON.stringify(get(doc, op.path)) !== JSON.stringify(op.value)) {
          throw new Error(`test failed at ${op.path}`);
        }
        break;
      default:
        throw new Error(`unknown op ${op.op}`);
    }
  }
  return doc;
}

/** A copy that shares the (never changed) entries: each section is a new object. */
export function sectionsCopy(doc) {
  const copy = {};
  for (const [key, value] of Object.entries(doc)) {
    copy[key] = value && typeof value === "object" && !Array.isArray(value) ? { ...value } : value;
  }
  return copy;
}

export function emptyDocument() {
  return { elements: {}, annotations: {}, meta: {} };
}

/** A canvas document with every section present (the hub may leave empty ones out). */
export function normalized(doc) {
  return { ...emptyDocument(), ...structuredClone(doc || {}) };
}
