//! The people's and open tasks' lookups by person and by assignee lead with the person and
//! the assignee instead of the tenant. Both serve the same equality lookups (a tenant's
//! engagements of a person, a tenant's tasks of an assignee by due time) as before; but an
//! index that began with the tenant alone competed with the primary key (tenant,
//! engagement, …) for a commit's lookups of one engagement's rows, and a plan made while the
//! table was small (PostgreSQL keeps a prepared statement's generic plan) took it on a tie:
//! each of a batch's engagements then scanned all of the tenant's rows, 1.5 s for a batch
//! of 200 on 10,000 engagements. Now only the primary key serves those lookups.

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

/// An index's name and columns.
type Shape = (&'static str, &'static [&'static str]);

/// An index of `table`, before and after.
struct Reordered {
    table: &'static str,
    old: Shape,
    new: Shape,
}

const REORDERED: [Reordered; 2] = [
    Reordered {
        table: "engagement_people",
        old: ("engagement_people_tenant_person_idx", &["tenant", "person"]),
        new: ("engagement_people_person_tenant_idx", &["person", "tenant"]),
    },
    Reordered {
        table: "engagement_tasks",
        old: (
            "engagement_tasks_tenant_assignee_due_at_idx",
            &["tenant", "assignee", "due_at"],
        ),
        new: (
            "engagement_tasks_assignee_tenant_due_at_idx",
            &["assignee", "tenant", "due_at"],
        ),
    },
];

/// Creates the index `name` on `columns` of `table`, then drops `replaced`.
async fn swap(
    manager: &SchemaManager<'_>,
    table: &'static str,
    (name, columns): Shape,
    replaced: &'static str,
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(Alias::new(table));
    for column in columns {
        index.col(Alias::new(*column));
    }
    manager.create_index(index).await?;
    manager
        .drop_index(Index::drop().name(replaced).table(Alias::new(table)).to_owned())
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for index in &REORDERED {
            swap(manager, index.table, index.new, index.old.0).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for index in &REORDERED {
            swap(manager, index.table, index.old, index.new.0).await?;
        }
        Ok(())
    }
}
