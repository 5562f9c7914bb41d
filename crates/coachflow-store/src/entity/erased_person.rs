//! `erased_people`: the stable pseudonym of each person whose data was erased, by a digest
//! of their id (the id itself is not kept here).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "erased_people")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    /// Hex SHA-256 of the tenant and the person id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    pub pseudonym: String,
    /// The principal that erased them.
    pub erased_by: String,
    pub erased_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
