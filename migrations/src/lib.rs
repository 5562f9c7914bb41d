//! Coachflow's database migrations, run by `coachflow migrate` and at start-up.
//!
//! Every migration is written with sea-query's schema builder so one definition runs on
//! SQLite and PostgreSQL alike.

use sea_orm_migration::MigrationTrait;
pub use sea_orm_migration::MigratorTrait;

mod m20261121_000001_initial;

/// All of Coachflow's migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261121_000001_initial::Migration)]
    }
}
