//! Long-running operations (AIP-151): a bulk migration of engagements is one row of
//! `operations` and one row of `operation_items` per engagement it selected, so it resumes
//! after a crash where it stopped, under a lease one replica holds at a time.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Operations::Table)
                    .col(ColumnDef::new(Operations::Tenant).text().not_null())
                    .col(ColumnDef::new(Operations::Id).text().not_null())
                    .col(ColumnDef::new(Operations::Kind).text().not_null())
                    .col(ColumnDef::new(Operations::Request).text().not_null())
                    .col(ColumnDef::new(Operations::Principal).text().not_null())
                    .col(ColumnDef::new(Operations::Status).text().not_null())
                    .col(ColumnDef::new(Operations::CancelRequested).boolean().not_null())
                    .col(ColumnDef::new(Operations::Error).text().null())
                    .col(ColumnDef::new(Operations::ClaimedBy).text().null())
                    .col(
                        ColumnDef::new(Operations::ClaimedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Operations::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Operations::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Operations::DoneAt).timestamp_with_time_zone().null())
                    .primary_key(Index::create().col(Operations::Tenant).col(Operations::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("operations_status_idx")
                    .table(Operations::Table)
                    .col(Operations::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OperationItems::Table)
                    .col(ColumnDef::new(OperationItems::Tenant).text().not_null())
                    .col(ColumnDef::new(OperationItems::Operation).text().not_null())
                    .col(ColumnDef::new(OperationItems::Engagement).text().not_null())
                    .col(ColumnDef::new(OperationItems::Outcome).text().not_null())
                    .col(ColumnDef::new(OperationItems::Detail).text().null())
                    .col(
                        ColumnDef::new(OperationItems::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(OperationItems::Tenant)
                            .col(OperationItems::Operation)
                            .col(OperationItems::Engagement),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OperationItems::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Operations::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Operations {
    Table,
    Tenant,
    Id,
    Kind,
    Request,
    Principal,
    Status,
    CancelRequested,
    Error,
    ClaimedBy,
    ClaimedUntil,
    CreatedAt,
    UpdatedAt,
    DoneAt,
}

#[derive(DeriveIden)]
enum OperationItems {
    Table,
    Tenant,
    Operation,
    Engagement,
    Outcome,
    Detail,
    UpdatedAt,
}
