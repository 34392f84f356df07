// Strict JSON, as calnet's Go decoder (internal/strictjson) reads it: one
// document and nothing after it, no key repeated inside an object, nesting
// at most 16 deep, and (checkKeys) only the exact, case-sensitive keys a
// format defines. JSON.parse keeps the last of repeated keys and so would
// accept documents the Go verifier refuses.

/** The deepest object/array nesting a calnet document may use. */
export const MAX_NESTING = 16;

/** Parses one JSON document, refusing repeated keys and trailing data. */
export function strictParse(text: string): any {
  let i = 0;
  const fail = (m: string): never => { throw new Error(`invalid JSON: ${m} at offset ${i}`); };
  const ws = () => { while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++; };
  const str = (): string => {
    const start = i;
    for (i++; i < text.length; i++) {
      const c = text[i];
      if (c === '\\') { i++; continue; }
      if (c === '"') { i++; return JSON.parse(text.slice(start, i)); }
    }
    return fail('unterminated string');
  };
  const value = (depth: number): any => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (depth >= MAX_NESTING) fail(`nesting deeper than ${MAX_NESTING}`);
      i++;
      ws();
      if (c === '[') {
        const arr: any[] = [];
        if (text[i] === ']') { i++; return arr; }
        for (;;) {
          arr.push(value(depth + 1));
          ws();
          if (text[i] === ',') { i++; continue; }
          if (text[i] === ']') { i++; return arr; }
          fail('want , or ] in an array');
        }
      }
      const obj: Record<string, any> = Object.create(null);
      if (text[i] === '}') { i++; return obj; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('want an object key');
        const key = str();
        if (Object.prototype.hasOwnProperty.call(obj, key)) fail(`duplicated field ${JSON.stringify(key)}`);
        ws();
        if (text[i] !== ':') fail('want : after an object key');
        i++;
        obj[key] = value(depth + 1);
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return obj; }
        fail('want , or } in an object');
      }
    }
    if (c === '"') return str();
    const m = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;
    m.lastIndex = i;
    const tok = m.exec(text);
    if (!tok) return fail('unexpected character');
    i = m.lastIndex;
    return JSON.parse(tok[0]);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('data after the document');
  return v;
}

/**
 * Checks that obj (a parsed JSON object) has no key outside `keys`: keys
 * are case-sensitive, as in the Go decoder ("Permissions" is not
 * "permissions").
 */
export function checkKeys(obj: any, keys: readonly string[], where: string): void {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`${where}: want an object`);
  for (const k of Object.keys(obj)) {
    if (!keys.includes(k)) throw new Error(`${where}: unknown field ${JSON.stringify(k)}`);
  }
}
