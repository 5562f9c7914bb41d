//! `outbox`: public events waiting to be published, in commit order by `position`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub position: i64,
    pub tenant: String,
    pub engagement: String,
    pub sequence: i64,
    /// The CloudEvents id, unique.
    pub event_id: String,
    pub event_type: String,
    pub routing_key: String,
    pub subject: String,
    pub time: DateTimeUtc,
    /// The CloudEvents `data`, JSON.
    pub data: String,
    pub created_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    /// The W3C `traceparent` of the command that wrote the row.
    pub traceparent: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
