//! `content_keys`: each engagement's data keys, wrapped by a key-encryption key. Erasing
//! an engagement's content destroys its keys (`wrapped` and `kek` cleared), which makes
//! every copy of the content sealed under them unreadable.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "content_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub engagement: String,
    /// 0 for the engagement's first key; one more after each erasure.
    #[sea_orm(primary_key, auto_increment = false)]
    pub generation: i32,
    /// The id of the key-encryption key that wraps it; `None` once destroyed.
    pub kek: Option<String>,
    /// Nonce and sealed key, base64; `None` once destroyed.
    pub wrapped: Option<String>,
    pub created_at: DateTimeUtc,
    pub destroyed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
