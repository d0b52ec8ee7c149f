//! `[emulator.quirks]`: where TCR's sources disagree or are silent (docs/tcr-contract.md), the
//! emulator plays each plausible behaviour, and the adapter is tested under every one.

use serde::{Deserialize, Serialize};

/// `[emulator.quirks]`: the emulator's choice among TCR's plausible behaviours.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EmulatorQuirks {
    /// How `Offset` of `DescribeNamespaces`, `DescribeRepositories` and `DescribeImages` is read.
    pub paging: Paging,
    /// How `NamespaceName` (DescribeNamespaces), `RepositoryName` (DescribeRepositories) and
    /// `ImageVersion` (DescribeImages without `ExactMatch`) filter.
    pub name_filter: NameFilter,
    /// A service that clamps `Limit` instead of refusing it: every listing (`DescribeNamespaces`,
    /// `DescribeRepositories`, `DescribeImages`, `DescribeInstances`) answers at most this many
    /// items a call, whatever `Limit` asks, and pages by it. Unset: a `Limit` above the
    /// documented maximum is refused with `InvalidParameterValue`.
    pub limit_cap: Option<u32>,
}

/// `Offset` of the cloud API's listings (`DescribeInstances` always counts items).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Paging {
    /// As documented and as Harbor's TCR provider calls it: `DescribeRepositories` and
    /// `DescribeImages` take a page number from 1 (0 is the first page too),
    /// `DescribeNamespaces` a page index from 0.
    #[default]
    Documented,
    /// Every listing takes a page index from 0.
    PageFromZero,
    /// Every listing takes a page number from 1 (0 is the first page too).
    PageFromOne,
    /// Every listing takes a page number from 1, and `Offset: 0` is refused with
    /// `InvalidParameterValue`.
    PageFromOneStrict,
    /// Every listing takes a number of items to skip.
    Items,
}

/// Whether a name filter of the cloud API matches a part of the name or the whole name.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum NameFilter {
    /// A substring (TCR's `ImageVersion` is documented as fuzzy; Terraform re-checks names).
    #[default]
    Partial,
    /// The whole name.
    Exact,
}

/// The emulator's answer to a duplicate chart upload.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChartDuplicates {
    #[default]
    Conflict,
    Overwrite,
}
