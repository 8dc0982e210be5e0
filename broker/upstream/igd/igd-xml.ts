import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { ParseResult } from '../upstream-types.js';
import { parsed, parseError } from '../upstream-types.js';

/**
 * Safe XML parsing for router replies. A document type declaration is
 * rejected outright, so no external or custom entity is ever defined or
 * expanded; only the five predefined entities and character references are
 * decoded. Namespace prefixes are dropped, because routers pick their own
 * (`s:`, `SOAP-ENV:`, none), and every value stays a string.
 */

/** A parsed element: text, or an object of child elements (an array when a name repeats). */
export type XmlValue = string | XmlElement | XmlValue[];
export interface XmlElement {
  [name: string]: XmlValue;
}

const parser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false,
  trimValues: true,
  processEntities: true,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  maxNestedTags: 32,
});

/** Parses a document of at most maxBytes UTF-8 bytes into elements. */
export function parseXml(text: string, maxBytes: number): ParseResult<XmlElement> {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > maxBytes)
    return parseError(`XML document of ${bytes} bytes exceeds the limit of ${maxBytes} bytes`);
  if (/<!DOCTYPE|<!ENTITY/i.test(text)) {
    return parseError(
      'XML document contains a document type declaration, which router replies never need',
    );
  }
  const validation = XMLValidator.validate(text);
  if (validation !== true) {
    return parseError(`invalid XML at line ${validation.err.line}: ${validation.err.msg}`);
  }
  try {
    const document: unknown = parser.parse(text);
    if (!isElement(document)) return parseError('XML document has no root element');
    return parsed(document);
  } catch (error) {
    return parseError(`invalid XML: ${(error as Error).message}`);
  }
}

export function isElement(value: unknown): value is XmlElement {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Returns the child elements with this name, whether the parser stored one or many. */
export function childElements(parent: XmlElement, name: string): XmlElement[] {
  const value = Object.hasOwn(parent, name) ? parent[name] : undefined;
  const values = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return values.filter(isElement);
}

export function childElement(parent: XmlElement, name: string): XmlElement | null {
  return childElements(parent, name)[0] ?? null;
}

/** Returns the text of a child element: '' for an empty element, null when it is missing or has children. */
export function childText(parent: XmlElement, name: string): string | null {
  const value = Object.hasOwn(parent, name) ? parent[name] : undefined;
  const first = Array.isArray(value) ? value[0] : value;
  if (typeof first === 'string') return first;
  if (isElement(first) && Object.keys(first).length === 0) return '';
  return null;
}

/** Escapes text for an XML element body. */
export function escapeXml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&apos;');
}
