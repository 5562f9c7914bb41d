//! Model versions can be deprecated: no new engagements start on a deprecated version, and
//! the ones running on it keep running.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ModelVersions::Table)
                    .add_column(
                        ColumnDef::new(ModelVersions::DeprecatedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ModelVersions::Table)
                    .drop_column(ModelVersions::DeprecatedAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ModelVersions {
    Table,
    DeprecatedAt,
}
