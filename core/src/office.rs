//! The office as the scripts describe it: departments, groups, staff, and the rule set
//! (office + procedures + bundles) that the engine runs on.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::procedure::Procedure;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OfficeInfo {
    pub name: String,
    /// IANA name, e.g. `Asia/Shanghai`; informative until calendars arrive.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Language of notices when the applicant gives none (`zh` if unset).
    #[serde(default)]
    pub language: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub department: String,
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staff {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

/// A bundle (一件事): one application form that opens several cases at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub id: String,
    pub name: String,
    pub procedures: Vec<String>,
}

/// Everything loaded from one scripts folder, validated as a whole. Immutable once built:
/// a reload builds a new one and swaps it in.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub office: OfficeInfo,
    pub departments: BTreeMap<String, Department>,
    pub groups: BTreeMap<String, Group>,
    pub staff: BTreeMap<String, Staff>,
    pub procedures: BTreeMap<String, Arc<Procedure>>,
    pub bundles: BTreeMap<String, Bundle>,
    /// The office calendar; Monday to Friday without holidays if no script declares one.
    pub calendar: crate::calendar::Calendar,
}

impl RuleSet {
    /// The groups a staff member belongs to, in id order.
    pub fn groups_of(&self, staff: &str) -> Vec<String> {
        self.groups
            .values()
            .filter(|g| g.members.iter().any(|m| m == staff))
            .map(|g| g.id.clone())
            .collect()
    }

    pub fn is_member(&self, staff: &str, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.members.iter().any(|m| m == staff))
    }
}
