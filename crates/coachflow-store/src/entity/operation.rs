//! `operations`: long-running operations (AIP-151), such as a bulk migration.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "operations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// What it does (`migrate_engagements`).
    pub kind: String,
    /// The request that started it, as JSON.
    pub request: String,
    /// Who started it, as JSON: the operation acts as them.
    pub principal: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub cancel_requested: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// The replica working on it, until `claimed_until`.
    pub claimed_by: Option<String>,
    pub claimed_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub done_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
