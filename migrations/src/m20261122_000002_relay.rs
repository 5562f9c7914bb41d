//! The outbox relay: the trace context a public event was committed under (so its publish
//! joins the command's trace), and claims of engagements by relays, so that with several
//! replicas one relay at a time publishes an engagement's events, in order. The per-row
//! claim columns of the initial schema were never used and go.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(ColumnDef::new(Outbox::Traceparent).text().null())
                    .to_owned(),
            )
            .await?;
        // One column per statement: SQLite alters one thing at a time.
        for column in [Outbox::ClaimedBy, Outbox::ClaimedUntil] {
            manager
                .alter_table(Table::alter().table(Outbox::Table).drop_column(column).to_owned())
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(OutboxClaims::Table)
                    .col(ColumnDef::new(OutboxClaims::Tenant).text().not_null())
                    .col(ColumnDef::new(OutboxClaims::Engagement).text().not_null())
                    .col(ColumnDef::new(OutboxClaims::ClaimedBy).text().not_null())
                    .col(
                        ColumnDef::new(OutboxClaims::ClaimedUntil)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(OutboxClaims::Tenant).col(OutboxClaims::Engagement))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_claims_claimed_by_idx")
                    .table(OutboxClaims::Table)
                    .col(OutboxClaims::ClaimedBy)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutboxClaims::Table).if_exists().to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(ColumnDef::new(Outbox::ClaimedBy).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(ColumnDef::new(Outbox::ClaimedUntil).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .drop_column(Outbox::Traceparent)
                    .to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Traceparent,
    ClaimedBy,
    ClaimedUntil,
}

#[derive(DeriveIden)]
enum OutboxClaims {
    Table,
    Tenant,
    Engagement,
    ClaimedBy,
    ClaimedUntil,
}
