import { XMLParser, XMLValidator } from 'fast-xml-parser';

/**
 * Parsers for a UPnP control request (UPnP Device Architecture 1.1 section
 * 3.2.1): the SOAPACTION header and the SOAP envelope in the POST body. Both
 * are total: every input gives a typed result or a typed error.
 */

/** Largest control request body accepted, in bytes. A real one is under 2 KiB. */
export const MAX_SOAP_BODY_BYTES = 16 * 1024;

export const SoapParseErrorCode = {
  tooLarge: 'too-large',
  doctypeForbidden: 'doctype-forbidden',
  malformedXml: 'malformed-xml',
  missingEnvelope: 'missing-envelope',
  missingAction: 'missing-action',
  invalidActionName: 'invalid-action-name',
  duplicateArgument: 'duplicate-argument',
  nestedArgument: 'nested-argument',
  invalidSoapAction: 'invalid-soap-action',
} as const;
export type SoapParseErrorCode = (typeof SoapParseErrorCode)[keyof typeof SoapParseErrorCode];

export interface SoapParseError {
  code: SoapParseErrorCode;
  message: string;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: SoapParseError };

export interface SoapActionHeader {
  /** For example `urn:schemas-upnp-org:service:WANIPConnection:2`. */
  serviceType: string;
  serviceName: string;
  serviceVersion: number;
  actionName: string;
}

export interface SoapActionCall {
  actionName: string;
  /** Argument values by name, namespace prefixes removed, surrounding whitespace trimmed. */
  arguments: ReadonlyMap<string, string>;
}

const ACTION_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const SERVICE_TYPE = /^urn:schemas-upnp-org:service:([A-Za-z][A-Za-z0-9]{0,63}):([1-9][0-9]{0,2})$/;

const fail = <T>(code: SoapParseErrorCode, message: string): ParseResult<T> => ({
  ok: false,
  error: { code, message },
});

/**
 * Parses a SOAPACTION header value such as
 * `"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"`.
 * The quotes that SOAP 1.1 requires are optional, because some clients omit them.
 */
export function parseSoapActionHeader(value: string | undefined): ParseResult<SoapActionHeader> {
  if (value === undefined || value.trim() === '') {
    return fail('invalid-soap-action', 'missing SOAPACTION header: send "<service type>#<action>"');
  }

  let text = value.trim();
  if (text.length > 256) {
    return fail(
      'invalid-soap-action',
      `SOAPACTION header of ${text.length} characters is too long`,
    );
  }
  if (text.length >= 2 && text.startsWith('"') && text.endsWith('"')) text = text.slice(1, -1);

  const hash = text.lastIndexOf('#');
  if (hash < 0) {
    return fail(
      'invalid-soap-action',
      `SOAPACTION ${JSON.stringify(value)} has no "#<action>" part`,
    );
  }
  const serviceType = text.slice(0, hash);
  const actionName = text.slice(hash + 1);

  const match = SERVICE_TYPE.exec(serviceType);
  if (match === null || match[1] === undefined || match[2] === undefined) {
    return fail(
      'invalid-soap-action',
      `SOAPACTION service type ${JSON.stringify(serviceType)} is not urn:schemas-upnp-org:service:NAME:VERSION`,
    );
  }
  if (!ACTION_NAME.test(actionName)) {
    return fail(
      'invalid-action-name',
      `SOAPACTION action name ${JSON.stringify(actionName)} is invalid`,
    );
  }

  return {
    ok: true,
    value: { serviceType, serviceName: match[1], serviceVersion: Number(match[2]), actionName },
  };
}

/**
 * DTDs are rejected before parsing, so no entity can be declared or expanded
 * (no billion-laughs, no external entities). Only the five predefined XML
 * entities and numeric character references are decoded.
 */
const DOCTYPE_OR_ENTITY = /<!(DOCTYPE|ENTITY)/i;

const xmlParser = new XMLParser({
  ignoreAttributes: true,
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  processEntities: true,
  htmlEntities: true,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Parses the SOAP envelope of a control request into the action name and its arguments. */
export function parseSoapBody(body: string): ParseResult<SoapActionCall> {
  const bytes = Buffer.byteLength(body, 'utf8');
  if (bytes > MAX_SOAP_BODY_BYTES) {
    return fail(
      'too-large',
      `SOAP body of ${bytes} bytes exceeds the limit of ${MAX_SOAP_BODY_BYTES}`,
    );
  }
  if (DOCTYPE_OR_ENTITY.test(body)) {
    return fail(
      'doctype-forbidden',
      'SOAP body contains a DOCTYPE or ENTITY declaration: remove it',
    );
  }

  const validation = XMLValidator.validate(body);
  if (validation !== true) {
    const { msg, line, col } = validation.err;
    return fail(
      'malformed-xml',
      `SOAP body is not well-formed XML at line ${line}, column ${col}: ${msg}`,
    );
  }

  let document: unknown;
  try {
    document = xmlParser.parse(body);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return fail('malformed-xml', `SOAP body could not be parsed: ${reason}`);
  }

  if (!isRecord(document) || !isRecord(document.Envelope)) {
    return fail('missing-envelope', 'SOAP body has no Envelope element');
  }
  const soapBody = document.Envelope.Body;
  if (!isRecord(soapBody)) {
    return fail('missing-envelope', 'SOAP Envelope has no Body element');
  }

  const actionNames = Object.keys(soapBody).filter((key) => key !== '#text');
  const actionName = actionNames[0];
  if (actionName === undefined || actionNames.length !== 1) {
    return fail(
      'missing-action',
      `SOAP Body must contain exactly one action element, found ${actionNames.length}`,
    );
  }
  if (!ACTION_NAME.test(actionName)) {
    return fail(
      'invalid-action-name',
      `SOAP action element ${JSON.stringify(actionName)} is invalid`,
    );
  }

  return parseArguments(actionName, soapBody[actionName]);
}

function parseArguments(actionName: string, element: unknown): ParseResult<SoapActionCall> {
  const argumentsByName = new Map<string, string>();

  // An action without arguments parses as an empty string.
  if (typeof element === 'string')
    return { ok: true, value: { actionName, arguments: argumentsByName } };
  if (Array.isArray(element)) {
    return fail('missing-action', `SOAP Body contains action ${actionName} more than once`);
  }
  if (!isRecord(element)) {
    return fail('missing-action', `SOAP action element ${actionName} has no usable content`);
  }

  for (const [name, value] of Object.entries(element)) {
    if (name === '#text') continue;
    if (Array.isArray(value)) {
      return fail('duplicate-argument', `argument ${name} appears more than once`);
    }
    if (typeof value !== 'string') {
      return fail('nested-argument', `argument ${name} must be text, not nested elements`);
    }
    argumentsByName.set(name, value);
  }

  return { ok: true, value: { actionName, arguments: argumentsByName } };
}
