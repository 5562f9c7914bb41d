//! `events`: the append-only log. The primary key (tenant, engagement, sequence) is what
//! makes concurrent appends safe.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub engagement: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub sequence: i64,
    /// `EventKind::type_name()`.
    pub event_type: String,
    pub at: DateTimeUtc,
    /// The whole `coachflow_engine::Event` as JSON.
    pub payload: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
