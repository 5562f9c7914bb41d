//! `model_versions`: every published version of every process model, immutable.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "model_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i32,
    pub display_name: String,
    pub description: String,
    pub source_format: String,
    pub source: String,
    /// The canonical model document as JSON.
    pub document: String,
    /// Hex SHA-256, computed by the publisher.
    pub checksum: String,
    pub created_at: DateTimeUtc,
    /// When the version was deprecated: no new engagements start on it.
    pub deprecated_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
