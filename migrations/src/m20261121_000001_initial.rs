//! The initial schema: published models, the event log with its snapshots, the query
//! projection (engagements, their people and open tasks), the outbox, timers and
//! idempotency keys. Every table is keyed by tenant; ids are text.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in tables() {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let names: [DynIden; 9] = [
            ModelVersions::Table.into_iden(),
            Engagements::Table.into_iden(),
            EngagementPeople::Table.into_iden(),
            EngagementTasks::Table.into_iden(),
            Events::Table.into_iden(),
            Snapshots::Table.into_iden(),
            Outbox::Table.into_iden(),
            Timers::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
        ];
        for name in names {
            manager
                .drop_table(Table::drop().table(name).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }

    /// All or nothing on every backend, SQLite included.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

fn text(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).text().not_null().to_owned()
}

fn text_null(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).text().null().to_owned()
}

fn timestamp(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().not_null().to_owned()
}

fn timestamp_null(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).timestamp_with_time_zone().null().to_owned()
}

fn integer(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).integer().not_null().to_owned()
}

fn big_integer(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

fn boolean(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name).boolean().not_null().to_owned()
}

fn primary_key<const N: usize>(columns: [DynIden; N]) -> IndexCreateStatement {
    let mut index = Index::create();
    for column in columns {
        index.col(column);
    }
    index
}

fn tables() -> Vec<TableCreateStatement> {
    use EngagementPeople as People;
    use EngagementTasks as Tasks;
    vec![
        Table::create()
            .table(ModelVersions::Table)
            .col(text(ModelVersions::Tenant))
            .col(text(ModelVersions::Key))
            .col(integer(ModelVersions::Version))
            .col(text(ModelVersions::DisplayName))
            .col(text(ModelVersions::Description))
            .col(text(ModelVersions::SourceFormat))
            .col(text(ModelVersions::Source))
            .col(text(ModelVersions::Document))
            .col(text(ModelVersions::Checksum))
            .col(timestamp(ModelVersions::CreatedAt))
            .primary_key(&mut primary_key([
                ModelVersions::Tenant.into_iden(),
                ModelVersions::Key.into_iden(),
                ModelVersions::Version.into_iden(),
            ]))
            .to_owned(),
        Table::create()
            .table(Engagements::Table)
            .col(text(Engagements::Tenant))
            .col(text(Engagements::Id))
            .col(text(Engagements::ModelKey))
            .col(integer(Engagements::ModelVersion))
            .col(text(Engagements::Status))
            .col(text_null(Engagements::Phase))
            .col(ColumnDef::new(Engagements::PhaseIteration).integer().null())
            .col(big_integer(Engagements::Sequence))
            .col(big_integer(Engagements::SnapshotSequence))
            .col(integer(Engagements::OpenTasks))
            .col(integer(Engagements::OverdueTasks))
            .col(timestamp_null(Engagements::NextDueAt))
            .col(timestamp(Engagements::CreatedAt))
            .col(timestamp(Engagements::UpdatedAt))
            .primary_key(&mut primary_key([
                Engagements::Tenant.into_iden(),
                Engagements::Id.into_iden(),
            ]))
            .to_owned(),
        Table::create()
            .table(People::Table)
            .col(text(People::Tenant))
            .col(text(People::Engagement))
            .col(text(People::Role))
            .col(text(People::Person))
            .primary_key(&mut primary_key([
                People::Tenant.into_iden(),
                People::Engagement.into_iden(),
                People::Role.into_iden(),
                People::Person.into_iden(),
            ]))
            .to_owned(),
        Table::create()
            .table(Tasks::Table)
            .col(text(Tasks::Tenant))
            .col(text(Tasks::Engagement))
            .col(text(Tasks::TaskId))
            .col(text(Tasks::TaskKey))
            .col(text_null(Tasks::Phase))
            .col(text_null(Tasks::Assignee))
            .col(timestamp_null(Tasks::DueAt))
            .col(boolean(Tasks::DueSoon))
            .col(boolean(Tasks::Overdue))
            .col(timestamp(Tasks::OpenedAt))
            .primary_key(&mut primary_key([
                Tasks::Tenant.into_iden(),
                Tasks::Engagement.into_iden(),
                Tasks::TaskId.into_iden(),
            ]))
            .to_owned(),
        Table::create()
            .table(Events::Table)
            .col(text(Events::Tenant))
            .col(text(Events::Engagement))
            .col(big_integer(Events::Sequence))
            .col(text(Events::EventType))
            .col(timestamp(Events::At))
            .col(text(Events::Payload))
            .primary_key(&mut primary_key([
                Events::Tenant.into_iden(),
                Events::Engagement.into_iden(),
                Events::Sequence.into_iden(),
            ]))
            .to_owned(),
        Table::create()
            .table(Snapshots::Table)
            .col(text(Snapshots::Tenant))
            .col(text(Snapshots::Engagement))
            .col(big_integer(Snapshots::Sequence))
            .col(text(Snapshots::State))
            .col(timestamp(Snapshots::CreatedAt))
            .primary_key(&mut primary_key([
                Snapshots::Tenant.into_iden(),
                Snapshots::Engagement.into_iden(),
            ]))
            .to_owned(),
        Table::create()
            .table(Outbox::Table)
            // BIGINT IDENTITY on PostgreSQL, INTEGER PRIMARY KEY AUTOINCREMENT on SQLite:
            // positions are never reused, even after the newest rows are deleted.
            .col(
                ColumnDef::new(Outbox::Position)
                    .big_integer()
                    .not_null()
                    .auto_increment()
                    .primary_key(),
            )
            .col(text(Outbox::Tenant))
            .col(text(Outbox::Engagement))
            .col(big_integer(Outbox::Sequence))
            .col(text(Outbox::EventId).unique_key().to_owned())
            .col(text(Outbox::EventType))
            .col(text(Outbox::RoutingKey))
            .col(text(Outbox::Subject))
            .col(timestamp(Outbox::Time))
            .col(text(Outbox::Data))
            .col(timestamp(Outbox::CreatedAt))
            .col(timestamp_null(Outbox::SentAt))
            .col(text_null(Outbox::ClaimedBy))
            .col(timestamp_null(Outbox::ClaimedUntil))
            .to_owned(),
        Table::create()
            .table(Timers::Table)
            .col(text(Timers::Tenant))
            .col(text(Timers::Engagement))
            .col(text(Timers::TimerId))
            .col(timestamp(Timers::FiresAt))
            .col(text_null(Timers::ClaimedBy))
            .col(timestamp_null(Timers::ClaimedUntil))
            .primary_key(&mut primary_key([
                Timers::Tenant.into_iden(),
                Timers::Engagement.into_iden(),
                Timers::TimerId.into_iden(),
            ]))
            .to_owned(),
        Table::create()
            .table(IdempotencyKeys::Table)
            .col(text(IdempotencyKeys::Tenant))
            .col(text(IdempotencyKeys::RequestId))
            .col(text(IdempotencyKeys::Method))
            .col(text(IdempotencyKeys::RequestHash))
            .col(ColumnDef::new(IdempotencyKeys::Response).blob().not_null())
            .col(timestamp(IdempotencyKeys::CreatedAt))
            .col(timestamp(IdempotencyKeys::ExpiresAt))
            .primary_key(&mut primary_key([
                IdempotencyKeys::Tenant.into_iden(),
                IdempotencyKeys::RequestId.into_iden(),
            ]))
            .to_owned(),
    ]
}

fn index<const N: usize>(name: &str, table: impl IntoIden, columns: [DynIden; N]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(column);
    }
    index
}

fn indexes() -> Vec<IndexCreateStatement> {
    use EngagementPeople as People;
    use EngagementTasks as Tasks;
    vec![
        index(
            "engagements_tenant_model_key_idx",
            Engagements::Table,
            [Engagements::Tenant.into_iden(), Engagements::ModelKey.into_iden()],
        ),
        index(
            "engagements_tenant_status_idx",
            Engagements::Table,
            [Engagements::Tenant.into_iden(), Engagements::Status.into_iden()],
        ),
        index(
            "engagements_tenant_phase_idx",
            Engagements::Table,
            [Engagements::Tenant.into_iden(), Engagements::Phase.into_iden()],
        ),
        index(
            "engagement_people_tenant_person_idx",
            People::Table,
            [People::Tenant.into_iden(), People::Person.into_iden()],
        ),
        index(
            "engagement_tasks_tenant_assignee_due_at_idx",
            Tasks::Table,
            [
                Tasks::Tenant.into_iden(),
                Tasks::Assignee.into_iden(),
                Tasks::DueAt.into_iden(),
            ],
        ),
        index(
            "outbox_tenant_position_idx",
            Outbox::Table,
            [Outbox::Tenant.into_iden(), Outbox::Position.into_iden()],
        ),
        index(
            "outbox_sent_at_position_idx",
            Outbox::Table,
            [Outbox::SentAt.into_iden(), Outbox::Position.into_iden()],
        ),
        index("timers_fires_at_idx", Timers::Table, [Timers::FiresAt.into_iden()]),
        index(
            "idempotency_keys_expires_at_idx",
            IdempotencyKeys::Table,
            [IdempotencyKeys::ExpiresAt.into_iden()],
        ),
    ]
}

#[derive(DeriveIden)]
enum ModelVersions {
    Table,
    Tenant,
    Key,
    Version,
    DisplayName,
    Description,
    SourceFormat,
    Source,
    Document,
    Checksum,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Engagements {
    Table,
    Tenant,
    Id,
    ModelKey,
    ModelVersion,
    Status,
    Phase,
    PhaseIteration,
    Sequence,
    SnapshotSequence,
    OpenTasks,
    OverdueTasks,
    NextDueAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum EngagementPeople {
    Table,
    Tenant,
    Engagement,
    Role,
    Person,
}

#[derive(DeriveIden)]
enum EngagementTasks {
    Table,
    Tenant,
    Engagement,
    TaskId,
    TaskKey,
    Phase,
    Assignee,
    DueAt,
    DueSoon,
    Overdue,
    OpenedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Tenant,
    Engagement,
    Sequence,
    EventType,
    At,
    Payload,
}

#[derive(DeriveIden)]
enum Snapshots {
    Table,
    Tenant,
    Engagement,
    Sequence,
    State,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Position,
    Tenant,
    Engagement,
    Sequence,
    EventId,
    EventType,
    RoutingKey,
    Subject,
    Time,
    Data,
    CreatedAt,
    SentAt,
    ClaimedBy,
    ClaimedUntil,
}

#[derive(DeriveIden)]
enum Timers {
    Table,
    Tenant,
    Engagement,
    TimerId,
    FiresAt,
    ClaimedBy,
    ClaimedUntil,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Tenant,
    RequestId,
    Method,
    RequestHash,
    Response,
    CreatedAt,
    ExpiresAt,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox_sql(builder: &dyn Fn(&TableCreateStatement) -> String) -> String {
        tables()
            .iter()
            .map(builder)
            .find(|sql| sql.starts_with(r#"CREATE TABLE "outbox""#))
            .expect("an outbox table")
    }

    #[test]
    fn outbox_positions_are_never_reused() {
        let sqlite = outbox_sql(&|table| table.to_string(SqliteQueryBuilder));
        assert!(
            sqlite.contains(r#""position" integer NOT NULL PRIMARY KEY AUTOINCREMENT"#),
            "{sqlite}"
        );
        let postgres = outbox_sql(&|table| table.to_string(PostgresQueryBuilder));
        assert!(
            postgres.contains(r#""position" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL PRIMARY KEY"#),
            "{postgres}"
        );
    }
}
