//! Content at rest and its erasure: a data key per engagement (and per erasure: an erased
//! engagement's later content gets a fresh key), wrapped by a key-encryption key; the
//! database's own key-encryption key where none is configured; the pseudonyms of erased
//! people; and the projection's closing and erasure times, for retention.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ContentKeys::Table)
                    .col(ColumnDef::new(ContentKeys::Tenant).text().not_null())
                    .col(ColumnDef::new(ContentKeys::Engagement).text().not_null())
                    .col(ColumnDef::new(ContentKeys::Generation).integer().not_null())
                    .col(ColumnDef::new(ContentKeys::Kek).text().null())
                    .col(ColumnDef::new(ContentKeys::Wrapped).text().null())
                    .col(
                        ColumnDef::new(ContentKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContentKeys::DestroyedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ContentKeys::Tenant)
                            .col(ContentKeys::Engagement)
                            .col(ContentKeys::Generation),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("content_keys_kek_idx")
                    .table(ContentKeys::Table)
                    .col(ContentKeys::Kek)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ContentKeks::Table)
                    .col(ColumnDef::new(ContentKeks::Id).text().not_null().primary_key())
                    .col(ColumnDef::new(ContentKeks::Key).text().not_null())
                    .col(
                        ColumnDef::new(ContentKeks::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ErasedPeople::Table)
                    .col(ColumnDef::new(ErasedPeople::Tenant).text().not_null())
                    .col(ColumnDef::new(ErasedPeople::Digest).text().not_null())
                    .col(ColumnDef::new(ErasedPeople::Pseudonym).text().not_null())
                    .col(ColumnDef::new(ErasedPeople::ErasedBy).text().not_null())
                    .col(
                        ColumnDef::new(ErasedPeople::ErasedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(ErasedPeople::Tenant).col(ErasedPeople::Digest))
                    .to_owned(),
            )
            .await?;
        // One column per statement: SQLite alters one thing at a time.
        for column in [Engagements::EndedAt, Engagements::ContentErasedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Engagements::Table)
                        .add_column(ColumnDef::new(column).timestamp_with_time_zone().null())
                        .to_owned(),
                )
                .await?;
        }
        // Engagements that ended before this migration ended at their last change.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE engagements SET ended_at = updated_at WHERE status IN ('completed', 'cancelled')",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("engagements_retention_idx")
                    .table(Engagements::Table)
                    .col(Engagements::Tenant)
                    .col(Engagements::EndedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("engagements_retention_idx")
                    .table(Engagements::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Engagements::ContentErasedAt, Engagements::EndedAt] {
            manager
                .alter_table(Table::alter().table(Engagements::Table).drop_column(column).to_owned())
                .await?;
        }
        for table in [
            ErasedPeople::Table.into_iden(),
            ContentKeks::Table.into_iden(),
            ContentKeys::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ContentKeys {
    Table,
    Tenant,
    Engagement,
    Generation,
    Kek,
    Wrapped,
    CreatedAt,
    DestroyedAt,
}

#[derive(DeriveIden)]
enum ContentKeks {
    Table,
    Id,
    Key,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ErasedPeople {
    Table,
    Tenant,
    Digest,
    Pseudonym,
    ErasedBy,
    ErasedAt,
}

#[derive(DeriveIden)]
enum Engagements {
    Table,
    Tenant,
    EndedAt,
    ContentErasedAt,
}
