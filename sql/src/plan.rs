//! Plans: what a bound statement will do, as a tree of operators over
//! key-range access paths. `EXPLAIN` prints this tree.

use std::sync::Arc;

use crate::catalog::Table;
use crate::expr::Expr;
use crate::types::DataType;

/// How a table's rows are reached: the key-range plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Access {
    /// Every primary-key column is fixed by equality: one point read.
    Point {
        /// One value per key column, in key order.
        key: Vec<Expr>,
    },
    /// A prefix of the key columns is fixed by equality and the next key
    /// column may be bounded: one range scan (on one shard when the first
    /// key column is fixed).
    Range {
        /// Values of the leading key columns.
        prefix: Vec<Expr>,
        /// Lower bound of the next key column: value and inclusiveness.
        lower: Option<(Expr, bool)>,
        /// Upper bound of the next key column: value and inclusiveness.
        upper: Option<(Expr, bool)>,
    },
    /// A secondary index: equality on a prefix of its columns, optionally a
    /// range on the next one; each entry leads to its row.
    Index {
        /// The index.
        index: crate::catalog::Index,
        /// Values of the leading indexed columns.
        prefix: Vec<Expr>,
        /// Lower bound of the next indexed column.
        lower: Option<(Expr, bool)>,
        /// Upper bound of the next indexed column.
        upper: Option<(Expr, bool)>,
        /// The value of the table's first primary-key column, when the
        /// predicate fixes it: the entries are then on one shard.
        partition: Option<Expr>,
    },
    /// An OR of branches that each fix every primary-key column (`(a, b)
    /// IN ((1, 2), (3, 4))`, `k IN (1, 2, 3)` with the rest of the key
    /// fixed): one point read per key, rows in key order.
    Points {
        /// One key (a value per key column, in key order) per branch.
        keys: Vec<Vec<Expr>>,
    },
    /// Every row of the table, on every shard.
    Full,
}

/// A table read through an access path.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    /// The table.
    pub table: Arc<Table>,
    /// How its rows are reached.
    pub access: Access,
    /// Read in descending key order (so that `ORDER BY ... DESC` needs no
    /// sort).
    pub reverse: bool,
}

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    /// `count(*)` when the argument is absent, else `count(x)`.
    Count,
    /// `sum(x)`
    Sum,
    /// `min(x)`
    Min,
    /// `max(x)`
    Max,
    /// `avg(x)`
    Avg,
    /// `string_agg(x, delimiter)`
    StringAgg,
    /// `bool_and(x)` / `every(x)`
    BoolAnd,
    /// `bool_or(x)`
    BoolOr,
}

impl AggFunc {
    /// The SQL name.
    pub fn name(&self) -> &'static str {
        match self {
            AggFunc::Count => "count",
            AggFunc::Sum => "sum",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::Avg => "avg",
            AggFunc::StringAgg => "string_agg",
            AggFunc::BoolAnd => "bool_and",
            AggFunc::BoolOr => "bool_or",
        }
    }
}

/// One aggregate computed per group.
#[derive(Clone, Debug, PartialEq)]
pub struct AggCall {
    /// The function.
    pub func: AggFunc,
    /// The argument; `None` for `count(*)`.
    pub arg: Option<Expr>,
    /// The argument's type.
    pub arg_ty: DataType,
    /// The result type.
    pub ty: DataType,
    /// `DISTINCT` inside the call.
    pub distinct: bool,
    /// `string_agg`'s delimiter (a constant).
    pub delimiter: Option<String>,
    /// `ORDER BY` the aggregated value inside the call: `Some(desc)`.
    pub order: Option<bool>,
}

/// A window function: ranking, offset and value functions, or an
/// aggregate over the window frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowFunc {
    /// `row_number()`
    RowNumber,
    /// `rank()`
    Rank,
    /// `dense_rank()`
    DenseRank,
    /// `percent_rank()`
    PercentRank,
    /// `cume_dist()`
    CumeDist,
    /// `ntile(n)`
    Ntile,
    /// `lag(x [, offset [, default]])`
    Lag,
    /// `lead(x [, offset [, default]])`
    Lead,
    /// `first_value(x)`
    FirstValue,
    /// `last_value(x)`
    LastValue,
    /// `nth_value(x, n)`
    NthValue,
    /// An aggregate over the frame.
    Agg(AggFunc),
}

impl WindowFunc {
    /// The SQL name.
    pub fn name(&self) -> &'static str {
        match self {
            WindowFunc::RowNumber => "row_number",
            WindowFunc::Rank => "rank",
            WindowFunc::DenseRank => "dense_rank",
            WindowFunc::PercentRank => "percent_rank",
            WindowFunc::CumeDist => "cume_dist",
            WindowFunc::Ntile => "ntile",
            WindowFunc::Lag => "lag",
            WindowFunc::Lead => "lead",
            WindowFunc::FirstValue => "first_value",
            WindowFunc::LastValue => "last_value",
            WindowFunc::NthValue => "nth_value",
            WindowFunc::Agg(a) => a.name(),
        }
    }
}

/// One end of a window frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameBound {
    /// The partition's first row.
    UnboundedPreceding,
    /// `n PRECEDING` (ROWS only).
    Preceding(u64),
    /// The current row (with RANGE: its first or last peer).
    CurrentRow,
    /// `n FOLLOWING` (ROWS only).
    Following(u64),
    /// The partition's last row.
    UnboundedFollowing,
}

/// The rows of its partition an aggregate (or `first_value` …) sees for
/// each row. The default, `RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT
/// ROW`, is the rows up to the current row's last peer in the ORDER BY
/// (the whole partition without ORDER BY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// `ROWS` (physical offsets) rather than `RANGE` (peers).
    pub rows: bool,
    /// The first row.
    pub start: FrameBound,
    /// The last row.
    pub end: FrameBound,
}

/// A window function call: `f(args) OVER (PARTITION BY … ORDER BY …
/// frame)`, over the rows of the plan below it.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowCall {
    /// The function.
    pub func: WindowFunc,
    /// Its arguments, over the input row.
    pub args: Vec<Expr>,
    /// The first argument's type (`Int8` without one).
    pub arg_ty: DataType,
    /// `PARTITION BY`.
    pub partition: Vec<Expr>,
    /// `ORDER BY`: expression, descending, NULLs first.
    pub order: Vec<(Expr, bool, bool)>,
    /// The frame.
    pub frame: Frame,
    /// The result type.
    pub ty: DataType,
    /// For aggregates: the call's accumulator settings (`arg` unused).
    pub agg: Option<AggCall>,
}

/// How a join treats rows without a match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    /// Only matching pairs.
    Inner,
    /// Every left row; unmatched ones padded with NULLs.
    Left,
    /// Every row of both sides.
    Full,
}

/// A set operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOpKind {
    /// `UNION`
    Union,
    /// `INTERSECT`
    Intersect,
    /// `EXCEPT`
    Except,
}

/// A sort key: an output column and its direction.
#[derive(Clone, Debug, PartialEq)]
pub struct SortKey {
    /// The column of the input row.
    pub column: usize,
    /// Descending order.
    pub desc: bool,
    /// NULLs before non-NULLs.
    pub nulls_first: bool,
}

/// A query plan node.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// One row with no columns: the input of `SELECT` without `FROM`.
    Unit,
    /// Rows of a table.
    Scan(Scan),
    /// Rows for which the predicate is true.
    Filter {
        /// The input.
        input: Box<Plan>,
        /// The predicate.
        predicate: Expr,
    },
    /// Literal rows (`VALUES (...), (...)`).
    Values {
        /// One expression per column per row (row-independent).
        rows: Vec<Vec<Expr>>,
        /// The column types.
        types: Vec<DataType>,
    },
    /// Computes new columns.
    Project {
        /// The input.
        input: Box<Plan>,
        /// One expression per output column.
        exprs: Vec<Expr>,
        /// The type of each expression.
        types: Vec<DataType>,
    },
    /// Groups rows and computes aggregates; outputs the group-by values
    /// followed by the aggregates.
    Aggregate {
        /// The input.
        input: Box<Plan>,
        /// Grouping expressions (none: one group over all rows).
        group_by: Vec<Expr>,
        /// Their types.
        group_types: Vec<DataType>,
        /// Aggregates.
        aggs: Vec<AggCall>,
    },
    /// Window functions: the input rows, each followed by one column per
    /// call (in the input's order).
    Window {
        /// The input.
        input: Box<Plan>,
        /// The calls.
        calls: Vec<WindowCall>,
    },
    /// Joins two inputs; outputs the left columns followed by the right.
    Join {
        /// Inner, left or full.
        kind: JoinKind,
        /// The probe side.
        left: Box<Plan>,
        /// The build side.
        right: Box<Plan>,
        /// Equality keys over left rows (paired with `right_keys`).
        left_keys: Vec<Expr>,
        /// Equality keys over right rows.
        right_keys: Vec<Expr>,
        /// Any other join condition, over the combined row.
        residual: Option<Expr>,
    },
    /// An inner join that looks the right side up in a table by primary
    /// key (or a prefix of it), once per left row. Outputs the left columns
    /// followed by the table's.
    LookupJoin {
        /// The driving side.
        left: Box<Plan>,
        /// The table looked up.
        table: Arc<Table>,
        /// Values of the leading primary-key columns, over the left row.
        key: Vec<Expr>,
        /// Conditions on the joined row.
        residual: Option<Expr>,
    },
    /// `unnest(array)` over an array's text form: one row per element,
    /// its text as an untyped value (NULL elements are NULL).
    Unnest {
        /// The array (row-independent).
        array: Expr,
    },
    /// A system catalog relation (`pg_catalog.pg_class`,
    /// `information_schema.tables`, …), computed from the catalog when read.
    System(crate::syscat::SystemTable),
    /// `generate_series(start, stop [, step])`: one column of `ty`.
    Series {
        /// The first value (row-independent).
        start: Expr,
        /// The bound.
        stop: Expr,
        /// The step (1 when absent; an interval for timestamps).
        step: Option<Expr>,
        /// The values' type (integer, bigint, timestamp, timestamptz).
        ty: DataType,
    },
    /// `UNION`, `INTERSECT`, `EXCEPT` (with `ALL`: keep duplicates).
    SetOp {
        /// Which operation.
        op: SetOpKind,
        /// `ALL`.
        all: bool,
        /// The left input.
        left: Box<Plan>,
        /// The right input (same column types as the left).
        right: Box<Plan>,
    },
    /// Removes duplicate rows.
    Distinct {
        /// The input.
        input: Box<Plan>,
    },
    /// Sorts rows.
    Sort {
        /// The input.
        input: Box<Plan>,
        /// Sort keys, most significant first.
        keys: Vec<SortKey>,
    },
    /// Skips `offset` rows and returns at most `limit`.
    Limit {
        /// The input.
        input: Box<Plan>,
        /// Maximum rows.
        limit: Option<Expr>,
        /// Rows to skip.
        offset: Option<Expr>,
    },
}

impl Scan {
    /// The names of the columns a scan produces.
    pub fn column_names(&self) -> Vec<String> {
        self.table.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// One line describing the access path.
    pub fn describe(&self) -> String {
        self.describe_in(&[])
    }

    /// Like [`Scan::describe`], inside a subquery whose enclosing rows'
    /// columns are named by `outer`.
    fn describe_in(&self, outer: &[Vec<String>]) -> String {
        let line = self.describe_access(&self.table.name, outer);
        if self.reverse {
            format!("{line}, descending")
        } else {
            line
        }
    }

    fn describe_access(&self, t: &str, outer: &[Vec<String>]) -> String {
        let names = self.column_names();
        let pk: Vec<&str> = self
            .table
            .primary_key
            .iter()
            .map(|&i| self.table.columns[i].name.as_str())
            .collect();
        let eqs = |values: &[Expr]| -> Vec<String> {
            values
                .iter()
                .zip(&pk)
                .map(|(v, c)| format!("{c} = {}", v.display_in(outer, &names)))
                .collect()
        };
        let one = if self.table.replicated {
            "replicated"
        } else {
            "1 shard"
        };
        let all = if self.table.replicated {
            "replicated"
        } else {
            "all shards"
        };
        match &self.access {
            Access::Point { key } => {
                format!("Point Get on {t} ({one}): {}", eqs(key).join(" AND "))
            }
            Access::Points { keys } => {
                let each: Vec<String> = keys
                    .iter()
                    .take(4)
                    .map(|k| format!("({})", eqs(k).join(" AND ")))
                    .collect();
                let more = if keys.len() > 4 { " OR …" } else { "" };
                format!(
                    "Point Gets on {t} ({} keys): {}{more}",
                    keys.len(),
                    each.join(" OR ")
                )
            }
            Access::Range {
                prefix,
                lower,
                upper,
            } => {
                let mut parts = eqs(prefix);
                let col = pk.get(prefix.len()).copied().unwrap_or("?");
                if let Some((v, inclusive)) = lower {
                    parts.push(format!(
                        "{col} {} {}",
                        if *inclusive { ">=" } else { ">" },
                        v.display_in(outer, &names)
                    ));
                }
                if let Some((v, inclusive)) = upper {
                    parts.push(format!(
                        "{col} {} {}",
                        if *inclusive { "<=" } else { "<" },
                        v.display_in(outer, &names)
                    ));
                }
                let shards = if prefix.is_empty() { all } else { one };
                format!("Range Scan on {t} ({shards}): {}", parts.join(" AND "))
            }
            Access::Index {
                index,
                prefix,
                lower,
                upper,
                partition,
            } => {
                let cols: Vec<&str> = index
                    .columns
                    .iter()
                    .map(|&i| self.table.columns[i].name.as_str())
                    .collect();
                let mut parts: Vec<String> = prefix
                    .iter()
                    .zip(&cols)
                    .map(|(v, c)| format!("{c} = {}", v.display_in(outer, &names)))
                    .collect();
                let col = cols.get(prefix.len()).copied().unwrap_or("?");
                if let Some((v, inclusive)) = lower {
                    parts.push(format!(
                        "{col} {} {}",
                        if *inclusive { ">=" } else { ">" },
                        v.display_in(outer, &names)
                    ));
                }
                if let Some((v, inclusive)) = upper {
                    parts.push(format!(
                        "{col} {} {}",
                        if *inclusive { "<=" } else { "<" },
                        v.display_in(outer, &names)
                    ));
                }
                let shards = if partition.is_some() { one } else { all };
                format!(
                    "Index Scan on {t} using {} ({shards}): {}",
                    index.name,
                    parts.join(" AND ")
                )
            }
            Access::Full => format!("Full Scan on {t} ({all})"),
        }
    }

    /// The columns rows come out ordered by (after those the access path
    /// fixes by equality), or `None` when the order is not by columns
    /// (tables without a primary key).
    pub fn key_order(&self) -> Option<Vec<usize>> {
        let pk = &self.table.primary_key;
        if pk.is_empty() {
            return None;
        }
        Some(match &self.access {
            Access::Point { .. } => Vec::new(),
            Access::Points { .. } => pk.to_vec(),
            Access::Range { prefix, .. } => pk[prefix.len()..].to_vec(),
            Access::Index { index, prefix, .. } => index.columns[prefix.len()..]
                .iter()
                .chain(pk.iter())
                .copied()
                .collect(),
            Access::Full => pk.clone(),
        })
    }
}

impl Plan {
    /// The types of the output columns.
    pub fn output_types(&self) -> Vec<DataType> {
        match self {
            Plan::Unit => Vec::new(),
            Plan::Scan(s) => s.table.columns.iter().map(|c| c.ty).collect(),
            Plan::Values { types, .. } | Plan::Project { types, .. } => types.clone(),
            Plan::Series { ty, .. } => vec![*ty],
            Plan::System(t) => t.columns().into_iter().map(|(_, ty)| ty).collect(),
            Plan::Unnest { .. } => vec![DataType::Text],
            Plan::Filter { input, .. }
            | Plan::Distinct { input }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. } => input.output_types(),
            Plan::Aggregate {
                group_types, aggs, ..
            } => group_types
                .iter()
                .copied()
                .chain(aggs.iter().map(|a| a.ty))
                .collect(),
            Plan::Window { input, calls } => {
                let mut t = input.output_types();
                t.extend(calls.iter().map(|c| c.ty));
                t
            }
            Plan::Join { left, right, .. } => {
                let mut t = left.output_types();
                t.extend(right.output_types());
                t
            }
            Plan::LookupJoin { left, table, .. } => {
                let mut t = left.output_types();
                t.extend(table.columns.iter().map(|c| c.ty));
                t
            }
            Plan::SetOp { left, .. } => left.output_types(),
        }
    }

    /// The number of output columns.
    pub fn width(&self) -> usize {
        self.output_types().len()
    }

    /// True when the plan reads at most one row through a point get and
    /// uses only operators of the lean row-at-a-time path.
    pub fn is_point_plan(&self) -> bool {
        match self {
            Plan::Unit => true,
            Plan::Scan(s) => matches!(s.access, Access::Point { .. }),
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Distinct { input }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. } => input.is_point_plan(),
            Plan::Values { .. }
            | Plan::Series { .. }
            | Plan::System(_)
            | Plan::Unnest { .. }
            | Plan::Window { .. }
            | Plan::Join { .. }
            | Plan::LookupJoin { .. }
            | Plan::SetOp { .. } => false,
        }
    }

    /// Names of the output columns (for EXPLAIN).
    pub fn column_names(&self) -> Vec<String> {
        match self {
            Plan::Unit => Vec::new(),
            Plan::Scan(s) => s.column_names(),
            Plan::Values { types, .. } => (1..=types.len()).map(|i| format!("column{i}")).collect(),
            Plan::Series { .. } => vec!["generate_series".to_string()],
            Plan::System(t) => t
                .columns()
                .into_iter()
                .map(|(n, _)| n.to_string())
                .collect(),
            Plan::Unnest { .. } => vec!["unnest".to_string()],
            Plan::Filter { input, .. }
            | Plan::Distinct { input }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. } => input.column_names(),
            Plan::Join { left, right, .. } => {
                let mut n = left.column_names();
                n.extend(right.column_names());
                n
            }
            Plan::LookupJoin { left, table, .. } => {
                let mut n = left.column_names();
                n.extend(table.columns.iter().map(|c| c.name.clone()));
                n
            }
            Plan::SetOp { left, .. } => left.column_names(),
            Plan::Window { input, calls } => {
                let names = input.column_names();
                let mut out = names.clone();
                out.extend(calls.iter().map(|c| {
                    let args: Vec<String> = c.args.iter().map(|e| e.display(&names)).collect();
                    format!("{}({}) OVER (...)", c.func.name(), args.join(", "))
                }));
                out
            }
            Plan::Project { input, exprs, .. } => {
                let names = input.column_names();
                exprs.iter().map(|e| e.display(&names)).collect()
            }
            Plan::Aggregate {
                input,
                group_by,
                aggs,
                ..
            } => {
                let names = input.column_names();
                group_by
                    .iter()
                    .map(|e| e.display(&names))
                    .chain(aggs.iter().map(|a| {
                        let arg = a
                            .arg
                            .as_ref()
                            .map_or("*".to_string(), |e| e.display(&names));
                        let d = if a.distinct { "DISTINCT " } else { "" };
                        format!("{}({d}{arg})", a.func.name())
                    }))
                    .collect()
            }
        }
    }

    /// The expressions this operator evaluates (not its inputs').
    fn expressions(&self) -> Vec<&Expr> {
        match self {
            Plan::Unit
            | Plan::Scan(_)
            | Plan::System(_)
            | Plan::SetOp { .. }
            | Plan::Distinct { .. } => Vec::new(),
            Plan::Sort { .. } => Vec::new(),
            Plan::Filter { predicate, .. } => vec![predicate],
            Plan::Values { rows, .. } => rows.iter().flatten().collect(),
            Plan::Unnest { array } => vec![array],
            Plan::Series {
                start, stop, step, ..
            } => [start, stop].into_iter().chain(step).collect(),
            Plan::Project { exprs, .. } => exprs.iter().collect(),
            Plan::Window { calls, .. } => calls
                .iter()
                .flat_map(|c| {
                    c.args
                        .iter()
                        .chain(&c.partition)
                        .chain(c.order.iter().map(|(e, _, _)| e))
                })
                .collect(),
            Plan::Aggregate { group_by, aggs, .. } => group_by
                .iter()
                .chain(aggs.iter().filter_map(|a| a.arg.as_ref()))
                .collect(),
            Plan::Join {
                left_keys,
                right_keys,
                residual,
                ..
            } => left_keys.iter().chain(right_keys).chain(residual).collect(),
            Plan::LookupJoin { key, residual, .. } => key.iter().chain(residual).collect(),
            Plan::Limit { limit, offset, .. } => limit.iter().chain(offset).collect(),
        }
    }

    /// Renders the plan as indented lines, one per operator.
    pub fn explain(&self, depth: usize, out: &mut Vec<String>) {
        self.explain_in(depth, out, &[]);
    }

    /// The names of the columns this operator's expressions read.
    fn row_names(&self) -> Vec<String> {
        match self {
            Plan::Unit
            | Plan::Scan(_)
            | Plan::System(_)
            | Plan::Unnest { .. }
            | Plan::Values { .. }
            | Plan::Series { .. } => Vec::new(),
            Plan::Join { left, right, .. } | Plan::SetOp { left, right, .. } => {
                let mut n = left.column_names();
                n.extend(right.column_names());
                n
            }
            Plan::LookupJoin { left, table, .. } => {
                let mut n = left.column_names();
                n.extend(table.columns.iter().map(|c| c.name.clone()));
                n
            }
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Window { input, .. }
            | Plan::Distinct { input }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. } => input.column_names(),
        }
    }

    fn explain_in(&self, depth: usize, out: &mut Vec<String>, outer: &[Vec<String>]) {
        let pad = "  ".repeat(depth);
        let line = match self {
            Plan::Unit => "Result (one row)".to_string(),
            Plan::Values { rows, .. } => format!("Values ({} rows)", rows.len()),
            Plan::System(t) => format!("System Scan on {}", t.name()),
            Plan::Unnest { array } => {
                format!("Function Scan: unnest({})", array.display_in(outer, &[]))
            }
            Plan::Series {
                start, stop, step, ..
            } => {
                let args: Vec<String> = [start, stop]
                    .into_iter()
                    .chain(step)
                    .map(|e| e.display_in(outer, &[]))
                    .collect();
                format!("Function Scan: generate_series({})", args.join(", "))
            }
            Plan::Join {
                kind,
                left,
                right,
                left_keys,
                right_keys,
                residual,
            } => {
                let (ln, rn) = (left.column_names(), right.column_names());
                let mut all = ln.clone();
                all.extend(rn.clone());
                let mut conds: Vec<String> = left_keys
                    .iter()
                    .zip(right_keys)
                    .map(|(l, r)| {
                        format!(
                            "{} = {}",
                            l.display_in(outer, &ln),
                            r.display_in(outer, &rn)
                        )
                    })
                    .collect();
                if let Some(r) = residual {
                    conds.push(r.display_in(outer, &all));
                }
                let algo = if left_keys.is_empty() {
                    "Nested Loop"
                } else {
                    "Hash"
                };
                let kind = match kind {
                    JoinKind::Inner => "Join",
                    JoinKind::Left => "Left Join",
                    JoinKind::Full => "Full Join",
                };
                if conds.is_empty() {
                    format!("{algo} {kind}")
                } else {
                    format!("{algo} {kind}: {}", conds.join(" AND "))
                }
            }
            Plan::LookupJoin {
                left,
                table,
                key,
                residual,
            } => {
                let ln = left.column_names();
                let mut all = ln.clone();
                all.extend(table.columns.iter().map(|c| c.name.clone()));
                let mut conds: Vec<String> = key
                    .iter()
                    .zip(&table.primary_key)
                    .map(|(k, &c)| {
                        format!("{} = {}", table.columns[c].name, k.display_in(outer, &ln))
                    })
                    .collect();
                if let Some(r) = residual {
                    conds.push(r.display_in(outer, &all));
                }
                let how = if key.len() == table.primary_key.len() {
                    "point"
                } else {
                    "range"
                };
                format!(
                    "Lookup Join on {} ({how}): {}",
                    table.name,
                    conds.join(" AND ")
                )
            }
            Plan::SetOp { op, all, .. } => {
                let name = match op {
                    SetOpKind::Union => "Union",
                    SetOpKind::Intersect => "Intersect",
                    SetOpKind::Except => "Except",
                };
                format!("{name}{}", if *all { " All" } else { "" })
            }
            Plan::Scan(s) => s.describe_in(outer),
            Plan::Filter { input, predicate } => {
                format!(
                    "Filter: {}",
                    predicate.display_in(outer, &input.column_names())
                )
            }
            Plan::Project { .. } => format!("Project: {}", self.column_names().join(", ")),
            Plan::Aggregate { group_by, .. } => {
                let cols = self.column_names();
                if group_by.is_empty() {
                    format!("Aggregate: {}", cols.join(", "))
                } else {
                    format!(
                        "Group By: {} computing {}",
                        cols[..group_by.len()].join(", "),
                        cols[group_by.len()..].join(", ")
                    )
                }
            }
            Plan::Distinct { .. } => "Distinct".to_string(),
            Plan::Window { input, calls } => {
                let names = input.column_names();
                let described: Vec<String> = calls
                    .iter()
                    .map(|c| {
                        let args: Vec<String> =
                            c.args.iter().map(|e| e.display_in(outer, &names)).collect();
                        let mut over = Vec::new();
                        if !c.partition.is_empty() {
                            let p: Vec<String> = c
                                .partition
                                .iter()
                                .map(|e| e.display_in(outer, &names))
                                .collect();
                            over.push(format!("PARTITION BY {}", p.join(", ")));
                        }
                        if !c.order.is_empty() {
                            let o: Vec<String> = c
                                .order
                                .iter()
                                .map(|(e, desc, _)| {
                                    format!(
                                        "{}{}",
                                        e.display_in(outer, &names),
                                        if *desc { " DESC" } else { "" }
                                    )
                                })
                                .collect();
                            over.push(format!("ORDER BY {}", o.join(", ")));
                        }
                        format!(
                            "{}({}) OVER ({})",
                            c.func.name(),
                            args.join(", "),
                            over.join(" ")
                        )
                    })
                    .collect();
                format!("WindowAgg: {}", described.join(", "))
            }
            Plan::Sort { input, keys } => {
                let names = input.column_names();
                let keys: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        let mut s = names.get(k.column).cloned().unwrap_or_default();
                        if k.desc {
                            s.push_str(" DESC");
                        }
                        if k.nulls_first != k.desc {
                            s.push_str(if k.nulls_first {
                                " NULLS FIRST"
                            } else {
                                " NULLS LAST"
                            });
                        }
                        s
                    })
                    .collect();
                format!("Sort: {}", keys.join(", "))
            }
            Plan::Limit { limit, offset, .. } => {
                let mut s = "Limit:".to_string();
                if let Some(l) = limit {
                    s.push_str(&format!(" limit {}", l.display_in(outer, &[])));
                }
                if let Some(o) = offset {
                    s.push_str(&format!(" offset {}", o.display_in(outer, &[])));
                }
                s
            }
        };
        out.push(format!("{pad}{line}"));
        // Subqueries in this operator's expressions, under it.
        let mut subqueries = Vec::new();
        for e in self.expressions() {
            e.walk(&mut |x| {
                if let Expr::Subquery(sq) = x {
                    subqueries.push((sq.id, sq.correlated, sq.plan.clone()));
                }
            });
        }
        for (id, correlated, plan) in subqueries {
            let runs = if correlated {
                "runs once per row"
            } else {
                "runs once"
            };
            out.push(format!("{pad}  Subquery {id} ({runs}):"));
            let mut enclosing = outer.to_vec();
            enclosing.push(self.row_names());
            plan.explain_in(depth + 2, out, &enclosing);
        }
        match self {
            Plan::Unit
            | Plan::Scan(_)
            | Plan::System(_)
            | Plan::Unnest { .. }
            | Plan::Values { .. }
            | Plan::Series { .. } => {}
            Plan::Join { left, right, .. } | Plan::SetOp { left, right, .. } => {
                left.explain_in(depth + 1, out, outer);
                right.explain_in(depth + 1, out, outer);
            }
            Plan::LookupJoin { left, .. } => left.explain_in(depth + 1, out, outer),
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Window { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Distinct { input }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. } => input.explain_in(depth + 1, out, outer),
        }
    }
}
