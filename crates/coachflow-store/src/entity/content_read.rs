//! `content_reads`: every break-glass read of an engagement's content (`content:read`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "content_reads")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant: String,
    pub engagement: String,
    /// The token's subject.
    pub principal: String,
    /// The system acting for the subject, if any.
    pub delegate: Option<String>,
    /// The method that read (`GetHistory`).
    pub method: String,
    pub read_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
