//! The one error type that crosses every layer.
//!
//! Every layer (kv, txn, sql, pgserver) returns [`Error`]. An error carries an
//! [`ErrorKind`] that says what went wrong in terms a client can act on, and a
//! message meant for a human. The kind, not the message, decides the SQLSTATE a
//! client sees; that mapping lives in exactly one place, `pgserver`'s
//! `sqlstate` module.
//!
//! Two questions every caller may ask:
//! - [`Error::is_retryable`]: the transaction lost an optimistic-concurrency
//!   race and may simply run again (SQLSTATE 40001).
//! - [`Error::is_environmental`]: the failure came from the machine (disk,
//!   network, a dead peer), not from the statement; running the same statement
//!   against a healthy system could succeed.
//!
//! Errors cross the network between nodes (a participant's reply, a
//! remote read's failure): both types serialize (serde; postcard between
//! nodes, which encodes a kind by its position), so new kinds go at the
//! end of [`ErrorKind`], and a node that meets a kind it does not know (a
//! newer peer's) refuses the message instead of misreading it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, as a client needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The transaction conflicted with a concurrent one and was aborted by OCC
    /// certification. Retrying the whole transaction is safe.
    SerializationFailure,
    /// The SQL text does not parse.
    Syntax,
    /// A table (or view) named in the statement does not exist.
    UndefinedTable,
    /// A column named in the statement does not exist.
    UndefinedColumn,
    /// A function or operator does not exist for the given argument types.
    UndefinedFunction,
    /// A `$n` parameter is referenced but was not supplied.
    UndefinedParameter,
    /// A named object other than a table or column (e.g. a setting) does
    /// not exist.
    UndefinedObject,
    /// An ORDER BY / GROUP BY / DISTINCT reference to the select list is
    /// invalid.
    InvalidColumnReference,
    /// A cast between two types that cannot be converted.
    CannotCoerce,
    /// A negative LIMIT or OFFSET.
    InvalidRowCount,
    /// A scalar subquery returned more than one row.
    CardinalityViolation,
    /// A function argument is out of its domain.
    InvalidArgument,
    /// A negative substring length.
    SubstringError,
    /// A LIKE pattern ending in its escape character, or a bad ESCAPE.
    InvalidEscape,
    /// `CREATE TABLE` of a name that is taken.
    DuplicateTable,
    /// A column name is used twice in one table definition.
    DuplicateColumn,
    /// A column reference matches more than one column.
    AmbiguousColumn,
    /// A non-aggregated column is used outside `GROUP BY`.
    Grouping,
    /// A value has the wrong type for where it is used.
    DatatypeMismatch,
    /// The statement is not valid for semantic reasons not covered above
    /// (e.g. a table without a primary key).
    InvalidDefinition,
    /// An object whose definition cannot be accepted as a whole, such as
    /// a view that refers to itself through other views (42P17).
    InvalidObjectDefinition,
    /// A primary-key or unique constraint would be violated.
    UniqueViolation,
    /// `NULL` written into a `NOT NULL` column.
    NotNullViolation,
    /// Division (or modulo) by zero.
    DivisionByZero,
    /// A numeric value is out of range for its type.
    NumericOutOfRange,
    /// A string is longer than its column allows.
    StringTooLong,
    /// Text cannot be converted to the requested type.
    InvalidTextRepresentation,
    /// Bytes that are not valid UTF-8, or a NUL character, where text is
    /// expected (22021).
    CharacterNotInRepertoire,
    /// A datetime value is invalid or out of range.
    DatetimeOutOfRange,
    /// An object is not in the state the operation needs, such as
    /// `currval` before `nextval` in the session (55000).
    ObjectNotInPrerequisiteState,
    /// A sequence reached its bound and does not cycle (2200H).
    SequenceGeneratorLimitExceeded,
    /// A value given for a `GENERATED ALWAYS` identity column (428C9).
    GeneratedAlways,
    /// A regular expression that does not compile (2201B).
    InvalidRegularExpression,
    /// A row fails a CHECK constraint (23514).
    CheckViolation,
    /// A row references a missing row, or a referenced row is deleted or
    /// rekeyed while still referenced (23503).
    ForeignKeyViolation,
    /// A foreign key's referenced columns have no unique constraint, or
    /// do not match its columns (42830).
    InvalidForeignKey,
    /// `DROP` of an object others depend on, without `CASCADE` (2BP01).
    DependentObjectsStillExist,
    /// A window function where none is allowed, nested, or a bad window
    /// clause (42P20).
    Windowing,
    /// A window frame offset that is negative (22013).
    InvalidPrecedingOrFollowingSize,
    /// A NULL where the clause needs a value (22004).
    NullValueNotAllowed,
    /// `ntile` of zero or fewer buckets (22014).
    InvalidArgumentForNtile,
    /// `nth_value` of a position below one (22016).
    InvalidArgumentForNthValue,
    /// A function used the wrong way for its kind, such as OVER on a
    /// plain function (42809).
    WrongObjectType,
    /// An object of that name already exists (42710).
    DuplicateObject,
    /// The same alias twice where names must differ (42712).
    DuplicateAlias,
    /// Several functions or operators match equally well (42725).
    AmbiguousFunction,
    /// A datetime's format is invalid (a bad time zone, 22007).
    InvalidDatetimeFormat,
    /// A time zone offset beyond ±15 hours (22009).
    InvalidTimeZoneDisplacement,
    /// An interval's value does not fit (22015).
    IntervalFieldOverflow,
    /// A statement arrived while the session's transaction has already failed.
    InFailedTransaction,
    /// `BEGIN` inside a transaction or similar misuse of transaction control.
    ActiveTransaction,
    /// A statement that needs a transaction block ran outside one.
    NoActiveTransaction,
    /// `ROLLBACK TO` or `RELEASE` named no open savepoint (3B001).
    InvalidSavepoint,
    /// A name that cannot be parsed (`to_regclass('a.b.c')`, 42602).
    InvalidName,
    /// `CLOSE` or `FETCH` of a cursor that does not exist (34000).
    InvalidCursorName,
    /// COPY data that does not parse (22P04).
    BadCopyFileFormat,
    /// `power(0, -1)`, `power(-8, 0.5)`, `sqrt(-1)` (2201F).
    InvalidArgumentForPower,
    /// Not allowed for this user (42501): e.g. COPY to a server file.
    InsufficientPrivilege,
    /// Valid PostgreSQL we do not support (yet).
    FeatureNotSupported,
    /// An argument to a function or a clause is invalid (e.g. negative LIMIT).
    InvalidParameterValue,
    /// A setting that is fixed while the server runs.
    CantChangeRuntimeParam,
    /// A statement used more memory than the configured limit.
    OutOfMemory,
    /// A limit of the server was passed, such as the size of a
    /// transaction's write set (54000).
    ProgramLimitExceeded,
    /// A statement nests deeper than the server's stack allows (deep
    /// expressions, long operator chains, views of views): 54001.
    StackDepth,
    /// The statement was cancelled: a CancelRequest, `statement_timeout`,
    /// or an idle transaction's timeout (57014).
    QueryCanceled,
    /// The server is shutting down and ended the statement (57P01).
    AdminShutdown,
    /// The client sent something that violates the wire protocol.
    Protocol,
    /// The disk is full.
    DiskFull,
    /// An I/O operation failed.
    Io,
    /// A peer or shard could not be reached.
    Unavailable,
    /// A commit may or may not have taken effect: it was decided (or
    /// installed) but could not be made durable or confirmed, so retrying
    /// it could apply it twice (40003, statement completion unknown).
    OutcomeUnknown,
    /// This node cannot serve transactions now: it is a follower of its
    /// replica group, or a leader without a majority. The message names
    /// the leader when it is known; connect there, or retry.
    NotServing,
    /// A broken invariant: this is a bug in Mako.
    Internal,
}

/// An error with its kind and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// What went wrong, for programs.
    pub kind: ErrorKind,
    /// What went wrong, for people.
    pub message: String,
}

/// The result type used throughout Mako.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// An OCC conflict: the transaction may be retried.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::SerializationFailure, message)
    }

    /// A broken invariant (a bug).
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    /// Valid SQL we do not support yet.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::FeatureNotSupported, message)
    }

    /// True when running the same transaction again may succeed (SQLSTATE 40001).
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::SerializationFailure
    }

    /// True when the failure came from the environment (disk, network, peers)
    /// rather than from the statement itself.
    pub fn is_environmental(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::DiskFull
                | ErrorKind::Io
                | ErrorKind::Unavailable
                | ErrorKind::OutcomeUnknown
                | ErrorKind::NotServing
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = if e.kind() == std::io::ErrorKind::StorageFull {
            ErrorKind::DiskFull
        } else {
            ErrorKind::Io
        };
        Error::new(kind, e.to_string())
    }
}

/// Returns early with an error of the given kind and a formatted message.
#[macro_export]
macro_rules! bail {
    ($kind:ident, $($arg:tt)*) => {
        return Err($crate::Error::new($crate::ErrorKind::$kind, format!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error survives the trip to another node whole.
    #[test]
    fn errors_cross_the_network_whole() {
        for e in [
            Error::conflict("a row read has changed"),
            Error::new(ErrorKind::OutcomeUnknown, "commit outcome unknown"),
            Error::new(ErrorKind::NotServing, "node n2 is a follower"),
        ] {
            let bytes = postcard::to_allocvec(&e).unwrap();
            assert_eq!(postcard::from_bytes::<Error>(&bytes).unwrap(), e);
        }
        assert!(postcard::from_bytes::<ErrorKind>(&[200]).is_err());
    }
}
