/**
 * Errors of the qubesd socket protocol. Every failure a `QubesdClient` call
 * can end in is a `QubesdError`, whose `type` is the exception class name:
 * the one qubesd sent, or the one qubesadmin (QubesOS/qubes-core-admin-client
 * `qubesadmin/exc.py`) raises for the same client-side failure.
 */

/** Exception class names that qubesd sends and that this project handles. */
export const QubesExceptionType = {
  /** Base class of every error meant for the user. */
  qubesException: 'QubesException',
  /** `No such domain: 'NAME'`: the source or destination VM does not exist. */
  vmNotFound: 'QubesVMNotFoundError',
  /** `Feature not set for domain VM: FEATURE`: admin.vm.feature.Get/Remove of an absent feature. */
  featureNotFound: 'QubesFeatureNotFoundError',
  /** `Invalid property 'NAME' of VM`: the VM class has no such property. */
  noSuchProperty: 'QubesNoSuchPropertyError',
  /** An invalid value, for example a feature name with illegal characters. */
  valueError: 'QubesValueError',
  /** An invalid value for one property, for example a netvm that does not provide network. */
  propertyValueError: 'QubesPropertyValueError',
  /**
   * qubesadmin's name for an empty reply. qubesd closes the connection without
   * a reply for PermissionDenied, ProtocolError (unknown method, unexpected
   * argument or payload), framing errors and requests over 64 KiB.
   */
  daemonAccess: 'QubesDaemonAccessError',
  /** qubesadmin's name for a failed connection or a malformed reply. */
  daemonCommunication: 'QubesDaemonCommunicationError',
} as const;

export class QubesdError extends Error {
  constructor(
    /** Exception class name, for example `QubesFeatureNotFoundError`. */
    readonly type: string,
    message: string,
    /** Python traceback; qubesd sends one only when started with `--debug`. */
    readonly traceback = '',
  ) {
    super(message);
    this.name = 'QubesdError';
  }
}

/** qubesd closed the connection without a reply: the request was denied or malformed. */
export class QubesdNoResponseError extends QubesdError {
  constructor(readonly method: string) {
    super(
      QubesExceptionType.daemonAccess,
      `qubesd sent an empty reply to ${method}: the call was denied or malformed (unknown method, unexpected argument or payload); see the qubesd log`,
    );
    this.name = 'QubesdNoResponseError';
  }
}

/** The socket could not be reached, or the reply broke the protocol. */
export class QubesdCommunicationError extends QubesdError {
  constructor(message: string) {
    super(QubesExceptionType.daemonCommunication, message);
    this.name = 'QubesdCommunicationError';
  }
}

/** A request that this client refuses to send, before any connection is made. */
export class InvalidQubesdRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidQubesdRequestError';
  }
}
