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
    /// Where applicants reach the office's pages (`https://zwfw.example.gov.cn`): notices
    /// link to tracking (and rating) from it. No links without it.
    #[serde(default)]
    pub website: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    pub id: String,
    pub name: String,
    /// The name in other languages (see `Procedure::names`).
    #[serde(default)]
    pub names: std::collections::BTreeMap<String, String>,
    /// Department heads: they see every case of the department and supervise its groups.
    #[serde(default)]
    pub heads: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub department: String,
    #[serde(default)]
    pub members: Vec<String>,
    /// Supervisors of the group (not necessarily members): they see its cases, reassign its
    /// tasks, issue and answer its supervision cards.
    #[serde(default)]
    pub supervisors: Vec<String>,
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
    /// Office-wide roles besides group membership.
    #[serde(default)]
    pub roles: Vec<OfficeRole>,
}

/// An office-wide role a staff member holds. (The administrator is a token, not a staff
/// member: see `Engine::issue_token`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfficeRole {
    /// Reads everything, including the audit log; changes nothing.
    Auditor,
    /// The office's supervision centre (督查室, 效能办): supervises every group of every
    /// department (sees their work, issues cards on any case, reassigns) without being
    /// named supervisor of each.
    Supervision,
}

/// A bundle (一件事): one application form that opens several cases at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub id: String,
    pub name: String,
    pub procedures: Vec<String>,
    /// Fields the applicant enters once for the whole bundle (the company's name, its
    /// credit code): ids of fields its procedures declare, copied into each case whose
    /// procedure declares them.
    #[serde(default)]
    pub fields: Vec<String>,
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

    /// Whether `staff` heads `department`.
    pub fn is_head(&self, staff: &str, department: &str) -> bool {
        self.departments
            .get(department)
            .is_some_and(|d| d.heads.iter().any(|h| h == staff))
    }

    /// Whether `staff` supervises `group`: named as its supervisor, head of its
    /// department, or of the supervision centre (every group).
    pub fn supervises(&self, staff: &str, group: &str) -> bool {
        self.groups.get(group).is_some_and(|g| {
            g.supervisors.iter().any(|s| s == staff)
                || self.is_head(staff, &g.department)
                || self.is_supervision_centre(staff)
        })
    }

    /// Whether `staff` belongs to the office's supervision centre.
    pub fn is_supervision_centre(&self, staff: &str) -> bool {
        self.staff
            .get(staff)
            .is_some_and(|s| s.roles.contains(&OfficeRole::Supervision))
    }

    /// The groups `staff` supervises, in id order.
    pub fn supervised_by(&self, staff: &str) -> Vec<String> {
        self.groups
            .keys()
            .filter(|g| self.supervises(staff, g))
            .cloned()
            .collect()
    }

    pub fn is_auditor(&self, staff: &str) -> bool {
        self.staff
            .get(staff)
            .is_some_and(|s| s.roles.contains(&OfficeRole::Auditor))
    }

    /// The roles of a staff member, as `/api/me` and the docs name them.
    pub fn roles_of(&self, staff: &str) -> Vec<&'static str> {
        let mut roles = Vec::new();
        if !self.groups_of(staff).is_empty() {
            roles.push("staff");
        }
        if self
            .groups
            .values()
            .any(|g| g.supervisors.iter().any(|s| s == staff))
        {
            roles.push("supervisor");
        }
        if self
            .departments
            .values()
            .any(|d| d.heads.iter().any(|h| h == staff))
        {
            roles.push("department_head");
        }
        if self.is_auditor(staff) {
            roles.push("auditor");
        }
        if self.is_supervision_centre(staff) {
            roles.push("supervision");
        }
        roles
    }

    /// References from departments and groups to staff who are not declared.
    pub fn unknown_staff(&self) -> Vec<String> {
        let mut errs = Vec::new();
        for d in self.departments.values() {
            for h in d.heads.iter().filter(|h| !self.staff.contains_key(*h)) {
                errs.push(format!(
                    "department '{}': head '{h}' is not declared as staff",
                    d.id
                ));
            }
        }
        for g in self.groups.values() {
            for s in g
                .supervisors
                .iter()
                .filter(|s| !self.staff.contains_key(*s))
            {
                errs.push(format!(
                    "group '{}': supervisor '{s}' is not declared as staff",
                    g.id
                ));
            }
        }
        errs
    }
}
