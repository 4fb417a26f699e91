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
    /// Computes new columns.
    Project {
        /// The input.
        input: Box<Plan>,
        /// One expression per output column.
        exprs: Vec<Expr>,
    },
    /// Groups rows and computes aggregates; outputs the group-by values
    /// followed by the aggregates.
    Aggregate {
        /// The input.
        input: Box<Plan>,
        /// Grouping expressions (none: one group over all rows).
        group_by: Vec<Expr>,
        /// Aggregates.
        aggs: Vec<AggCall>,
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
                .map(|(v, c)| format!("{c} = {}", v.display(&names)))
                .collect()
        };
        let t = &self.table.name;
        match &self.access {
            Access::Point { key } => {
                format!("Point Get on {t} (1 shard): {}", eqs(key).join(" AND "))
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
                        v.display(&names)
                    ));
                }
                if let Some((v, inclusive)) = upper {
                    parts.push(format!(
                        "{col} {} {}",
                        if *inclusive { "<=" } else { "<" },
                        v.display(&names)
                    ));
                }
                let shards = if prefix.is_empty() {
                    "all shards"
                } else {
                    "1 shard"
                };
                format!("Range Scan on {t} ({shards}): {}", parts.join(" AND "))
            }
            Access::Full => format!("Full Scan on {t} (all shards)"),
        }
    }
}

impl Plan {
    /// Names of the output columns (for EXPLAIN).
    pub fn column_names(&self) -> Vec<String> {
        match self {
            Plan::Unit => Vec::new(),
            Plan::Scan(s) => s.column_names(),
            Plan::Filter { input, .. }
            | Plan::Distinct { input }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. } => input.column_names(),
            Plan::Project { input, exprs } => {
                let names = input.column_names();
                exprs.iter().map(|e| e.display(&names)).collect()
            }
            Plan::Aggregate {
                input,
                group_by,
                aggs,
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

    /// Renders the plan as indented lines, one per operator.
    pub fn explain(&self, depth: usize, out: &mut Vec<String>) {
        let pad = "  ".repeat(depth);
        let line = match self {
            Plan::Unit => "Result (one row)".to_string(),
            Plan::Scan(s) => s.describe(),
            Plan::Filter { input, predicate } => {
                format!("Filter: {}", predicate.display(&input.column_names()))
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
                    s.push_str(&format!(" limit {}", l.display(&[])));
                }
                if let Some(o) = offset {
                    s.push_str(&format!(" offset {}", o.display(&[])));
                }
                s
            }
        };
        out.push(format!("{pad}{line}"));
        match self {
            Plan::Unit | Plan::Scan(_) => {}
            Plan::Filter { input, .. }
            | Plan::Project { input, .. }
            | Plan::Aggregate { input, .. }
            | Plan::Distinct { input }
            | Plan::Sort { input, .. }
            | Plan::Limit { input, .. } => input.explain(depth + 1, out),
        }
    }
}
