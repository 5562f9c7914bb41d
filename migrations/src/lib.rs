//! Coachflow's database migrations, run by `coachflow migrate` and at start-up.
//!
//! Every migration is written with sea-query's schema builder (or, where it has no words for
//! it, in SQL both backends share) so one definition runs on SQLite and PostgreSQL alike.

use sea_orm_migration::MigrationTrait;
pub use sea_orm_migration::MigratorTrait;

mod m20261121_000001_initial;
mod m20261122_000002_relay;
mod m20261201_000003_identity;
mod m20261201_000004_model_versions;
mod m20261201_000005_operations;
mod m20261202_000006_content;
mod m20261207_000007_person_and_assignee_first;

/// All of Coachflow's migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_initial::Migration),
            Box::new(m20261122_000002_relay::Migration),
            Box::new(m20261201_000003_identity::Migration),
            Box::new(m20261201_000004_model_versions::Migration),
            Box::new(m20261201_000005_operations::Migration),
            Box::new(m20261202_000006_content::Migration),
            Box::new(m20261207_000007_person_and_assignee_first::Migration),
        ]
    }
}
