//! Identity: break-glass reads of content (`content:read`) are recorded, one row each; and
//! request ids remember where a request left its resource instead of an encoded response,
//! so the remembered ones of the old form go.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ContentReads::Table)
                    .col(
                        ColumnDef::new(ContentReads::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ContentReads::Tenant).text().not_null())
                    .col(ColumnDef::new(ContentReads::Engagement).text().not_null())
                    .col(ColumnDef::new(ContentReads::Principal).text().not_null())
                    .col(ColumnDef::new(ContentReads::Delegate).text().null())
                    .col(ColumnDef::new(ContentReads::Method).text().not_null())
                    .col(
                        ColumnDef::new(ContentReads::ReadAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("content_reads_engagement_idx")
                    .table(ContentReads::Table)
                    .col(ContentReads::Tenant)
                    .col(ContentReads::Engagement)
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(Query::delete().from_table(IdempotencyKeys::Table).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ContentReads::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ContentReads {
    Table,
    Id,
    Tenant,
    Engagement,
    Principal,
    Delegate,
    Method,
    ReadAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
}
