//! The calls of discovery, the portability report, provider pushes and storage:
//! each a line or two over the core, like those of `lib.rs`; `digime-blocking` has
//! the same calls, blocking.

use crate::Client;
use crate::Upload;
use digime_protocol::discovery::{Category, Country, FacetQuery, Platform, SampleDataSet};
use digime_protocol::flow::Authed;
use digime_protocol::report::{self, MAX_IN_MEMORY_BYTES};
use digime_protocol::{
    Contract, Error, FhirVersion, PortabilityReportOptions, SourcesPage, SourcesQuery, Storage,
    StorageFileList, StorageId, UserAccessToken,
};
use std::collections::BTreeMap;
use tokio::io::AsyncWrite;

impl Client {
    /// One page of the sources a user can onboard: approved pull sources unless the
    /// query's filter says otherwise.
    pub async fn query_sources(
        &self,
        contract: &Contract,
        query: &SourcesQuery,
    ) -> Result<SourcesPage, Error> {
        self.run(self.sdk.query_sources(contract, query)?).await
    }

    /// The countries sources are in.
    pub async fn query_countries(
        &self,
        contract: &Contract,
        query: &FacetQuery,
    ) -> Result<Vec<Country>, Error> {
        self.run(self.sdk.query_countries(contract, query)?).await
    }

    /// The platforms of sources.
    pub async fn query_platforms(
        &self,
        contract: &Contract,
        query: &FacetQuery,
    ) -> Result<Vec<Platform>, Error> {
        self.run(self.sdk.query_platforms(contract, query)?).await
    }

    /// The categories of sources.
    pub async fn query_categories(
        &self,
        contract: &Contract,
        query: &FacetQuery,
    ) -> Result<Vec<Category>, Error> {
        self.run(self.sdk.query_categories(contract, query)?).await
    }

    /// A source's sample data sets, by id (the `data_set` of
    /// [`digime_protocol::auth::SampleData`]).
    pub async fn service_sample_data_sets(
        &self,
        contract: &Contract,
        source_id: u64,
    ) -> Result<BTreeMap<String, SampleDataSet>, Error> {
        self.run(self.sdk.service_sample_data_sets(contract, source_id))
            .await
    }

    /// The user's portability report, in memory: UTF-8, and at most
    /// [`MAX_IN_MEMORY_BYTES`] (use [`Client::portability_report_to`] for more).
    pub async fn portability_report(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        options: &PortabilityReportOptions,
    ) -> Result<Authed<String>, Error> {
        let flow = self.sdk.portability_report(contract, token, options)?;
        let mut report = Vec::new();
        let flow = flow.with_output_limit(MAX_IN_MEMORY_BYTES);
        let done = self.run_to(flow, &mut report).await?;
        report::into_text(done, report)
    }

    /// The user's portability report, written to `sink` as it arrives; `sink` is
    /// flushed at the end.
    pub async fn portability_report_to(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        options: &PortabilityReportOptions,
        sink: &mut (impl AsyncWrite + Unpin + Send),
    ) -> Result<Authed<()>, Error> {
        self.run_to(self.sdk.portability_report(contract, token, options)?, sink)
            .await
    }

    /// Pushes a FHIR resource (a JSON object) to the health provider of one of the
    /// user's push accounts (its id in `read_accounts`, found by the
    /// `accountReference` of the authorization's callback).
    pub async fn push_to_provider(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        account_id: &str,
        version: FhirVersion,
        resource: &serde_json::Value,
    ) -> Result<Authed<()>, Error> {
        let flow = (self.sdk).push_to_provider(contract, token, account_id, version, resource)?;
        self.run(flow).await
    }

    /// A new provisional storage, to give a user at authorization
    /// (`AuthorizeOptions::storage_id`).
    pub async fn create_provisional_storage(&self, contract: &Contract) -> Result<Storage, Error> {
        self.run(self.sdk.create_provisional_storage(contract))
            .await
    }

    /// The user's storage.
    pub async fn user_storage(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<Authed<Storage>, Error> {
        self.run(self.sdk.user_storage(contract, token)).await
    }

    /// The files of a storage folder (`""` or `/`: the application's root), and of its
    /// subfolders with `recursive`.
    pub async fn list_storage_files(
        &self,
        contract: &Contract,
        storage: &StorageId,
        folder: &str,
        recursive: bool,
    ) -> Result<StorageFileList, Error> {
        let flow = (self.sdk).list_storage_files(contract, storage, folder, recursive)?;
        self.run(flow).await
    }

    /// Uploads `body` as `file_name` into `folder`, encrypted to the contract's own key
    /// as it streams (constant memory, sent with a `Content-Length`). The same path
    /// again replaces the file.
    pub async fn upload_storage_file(
        &self,
        contract: &Contract,
        storage: &StorageId,
        folder: &str,
        file_name: &str,
        body: impl Upload,
    ) -> Result<(), Error> {
        let flow = (self.sdk).upload_storage_file(contract, storage, folder, file_name)?;
        self.run_with_upload(flow, body).await
    }

    /// Downloads a storage file, decrypting it into `sink` as it arrives; `sink` is
    /// flushed at the end. The bytes are only valid once this returns `Ok` (the
    /// envelope has no MAC): on an error, discard what was written.
    pub async fn download_storage_file(
        &self,
        contract: &Contract,
        storage: &StorageId,
        path: &str,
        sink: &mut (impl AsyncWrite + Unpin + Send),
    ) -> Result<(), Error> {
        self.run_to(
            self.sdk.download_storage_file(contract, storage, path)?,
            sink,
        )
        .await
    }

    /// Deletes a storage file (`/a/x.json`), a folder and all in it (`/a/`), or all of
    /// the application's files (`/`).
    pub async fn delete_storage_files(
        &self,
        contract: &Contract,
        storage: &StorageId,
        path: &str,
    ) -> Result<(), Error> {
        self.run(self.sdk.delete_storage_files(contract, storage, path)?)
            .await
    }
}
