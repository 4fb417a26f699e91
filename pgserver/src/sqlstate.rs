//! The one place where error kinds become SQLSTATE codes.

use kv::ErrorKind;

/// The SQLSTATE a client sees for an error kind.
pub fn sqlstate(kind: ErrorKind) -> &'static str {
    use ErrorKind::*;
    match kind {
        SerializationFailure => "40001",
        Syntax => "42601",
        UndefinedTable => "42P01",
        UndefinedColumn => "42703",
        UndefinedFunction => "42883",
        UndefinedParameter => "42P02",
        UndefinedObject => "42704",
        DuplicateTable => "42P07",
        DuplicateColumn => "42701",
        AmbiguousColumn => "42702",
        Grouping => "42803",
        DatatypeMismatch => "42804",
        InvalidColumnReference => "42P10",
        CannotCoerce => "42846",
        InvalidDefinition => "42P16",
        InvalidObjectDefinition => "42P17",
        UniqueViolation => "23505",
        NotNullViolation => "23502",
        DivisionByZero => "22012",
        NumericOutOfRange => "22003",
        StringTooLong => "22001",
        InvalidTextRepresentation => "22P02",
        CharacterNotInRepertoire => "22021",
        DatetimeOutOfRange => "22008",
        InvalidDatetimeFormat => "22007",
        AmbiguousFunction => "42725",
        DuplicateAlias => "42712",
        CheckViolation => "23514",
        ForeignKeyViolation => "23503",
        InvalidForeignKey => "42830",
        DependentObjectsStillExist => "2BP01",
        Windowing => "42P20",
        InvalidPrecedingOrFollowingSize => "22013",
        InvalidArgumentForNtile => "22014",
        NullValueNotAllowed => "22004",
        InvalidArgumentForNthValue => "22016",
        WrongObjectType => "42809",
        DuplicateObject => "42710",
        InvalidRegularExpression => "2201B",
        ObjectNotInPrerequisiteState => "55000",
        SequenceGeneratorLimitExceeded => "2200H",
        GeneratedAlways => "428C9",
        InvalidTimeZoneDisplacement => "22009",
        IntervalFieldOverflow => "22015",
        InvalidParameterValue => "22023",
        CantChangeRuntimeParam => "55P02",
        InvalidRowCount => "2201W",
        CardinalityViolation => "21000",
        InvalidArgument => "22023",
        SubstringError => "22011",
        InvalidEscape => "22025",
        InFailedTransaction => "25P02",
        ActiveTransaction => "25001",
        NoActiveTransaction => "25P01",
        InvalidSavepoint => "3B001",
        InvalidName => "42602",
        InvalidCursorName => "34000",
        BadCopyFileFormat => "22P04",
        InvalidArgumentForPower => "2201F",
        InsufficientPrivilege => "42501",
        FeatureNotSupported => "0A000",
        OutOfMemory => "53200",
        StackDepth => "54001",
        ProgramLimitExceeded => "54000",
        QueryCanceled => "57014",
        AdminShutdown => "57P01",
        DiskFull => "53100",
        Protocol => "08P01",
        Io => "58030",
        // A peer (another group's leader, the replication stream) did not
        // answer: the session itself is fine, so not 08006 (which drivers
        // take as a broken connection); the statement may be retried.
        Unavailable => "57P03",
        OutcomeUnknown => "40003",
        NotServing => "57P03",
        Internal => "XX000",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_the_issue_names() {
        assert_eq!(sqlstate(ErrorKind::Syntax), "42601");
        assert_eq!(sqlstate(ErrorKind::SerializationFailure), "40001");
        assert_eq!(sqlstate(ErrorKind::InFailedTransaction), "25P02");
        assert_eq!(sqlstate(ErrorKind::FeatureNotSupported), "0A000");
        // A peer that did not answer leaves the session usable.
        assert_eq!(sqlstate(ErrorKind::Unavailable), "57P03");
    }
}
