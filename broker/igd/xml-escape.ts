const ENTITY_BY_CHARACTER: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
};

/** Checks a code point against the Char production of XML 1.0 (section 2.2), which excludes lone surrogates. */
function isXmlCharacter(codePoint: number): boolean {
  return (
    codePoint === 0x9 ||
    codePoint === 0xa ||
    codePoint === 0xd ||
    (codePoint >= 0x20 && codePoint <= 0xd7ff) ||
    (codePoint >= 0xe000 && codePoint <= 0xfffd) ||
    (codePoint >= 0x10000 && codePoint <= 0x10ffff)
  );
}

/**
 * Escapes text for XML element content and attribute values. Characters that
 * XML 1.0 forbids even escaped (most C0 controls, lone surrogates, U+FFFE,
 * U+FFFF) become U+FFFD, so a client-supplied description can never break the
 * document it is echoed in.
 */
export function escapeXml(text: string): string {
  let escaped = '';
  // for...of walks code points; a lone surrogate arrives as one unit.
  for (const character of text) {
    const codePoint = character.codePointAt(0) ?? 0;
    if (!isXmlCharacter(codePoint)) {
      escaped += '\ufffd';
      continue;
    }
    escaped += ENTITY_BY_CHARACTER[character] ?? character;
  }
  return escaped;
}
