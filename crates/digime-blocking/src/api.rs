//! The calls of discovery, the portability report, provider pushes and storage:
//! each a line or two over the core, like those of `lib.rs`; `digime-async` has the
//! same calls, async.

use crate::Client;
use digime_protocol::discovery::{Category, Country, FacetQuery, Platform, SampleDataSet};
use digime_protocol::flow::Authed;
use digime_protocol::report::{self, MAX_IN_MEMORY_BYTES};
use digime_protocol::{
    Contract, Error, FhirVersion, PortabilityReportOptions, SourcesPage, SourcesQuery, Storage,
    StorageFileList, StorageId, UserAccessToken,
};
use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};

impl Client {
    /// One page of the sources a user can onboard: approved pull sources unless the
    /// query's filter says otherwise.
    pub fn query_sources(
        &self,
        contract: &Contract,
        query: &SourcesQuery,
    ) -> Result<SourcesPage, Error> {
        self.run(self.sdk.query_sources(contract, query)?, None)
    }

    /// The countries sources are in.
    pub fn query_countries(
        &self,
        contract: &Contract,
        query: &FacetQuery,
    ) -> Result<Vec<Country>, Error> {
        self.run(self.sdk.query_countries(contract, query)?, None)
    }

    /// The platforms of sources.
    pub fn query_platforms(
        &self,
        contract: &Contract,
        query: &FacetQuery,
    ) -> Result<Vec<Platform>, Error> {
        self.run(self.sdk.query_platforms(contract, query)?, None)
    }

    /// The categories of sources.
    pub fn query_categories(
        &self,
        contract: &Contract,
        query: &FacetQuery,
    ) -> Result<Vec<Category>, Error> {
        self.run(self.sdk.query_categories(contract, query)?, None)
    }

    /// A source's sample data sets, by id (the `data_set` of
    /// [`digime_protocol::auth::SampleData`]).
    pub fn service_sample_data_sets(
        &self,
        contract: &Contract,
        source_id: u64,
    ) -> Result<BTreeMap<String, SampleDataSet>, Error> {
        self.run(self.sdk.service_sample_data_sets(contract, source_id), None)
    }

    /// The user's portability report, in memory: UTF-8, and at most
    /// [`MAX_IN_MEMORY_BYTES`] (use [`Client::portability_report_to`] for more).
    pub fn portability_report(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        options: &PortabilityReportOptions,
    ) -> Result<Authed<String>, Error> {
        let flow = self.sdk.portability_report(contract, token, options)?;
        let mut report = Vec::new();
        let done = self.run_to(flow.with_output_limit(MAX_IN_MEMORY_BYTES), &mut report)?;
        report::into_text(done, report)
    }

    /// The user's portability report, written to `sink` as it arrives; `sink` is
    /// flushed at the end.
    pub fn portability_report_to(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        options: &PortabilityReportOptions,
        sink: &mut dyn Write,
    ) -> Result<Authed<()>, Error> {
        self.run_to(self.sdk.portability_report(contract, token, options)?, sink)
    }

    /// Pushes a FHIR resource (a JSON object) to the health provider of one of the
    /// user's push accounts (its id in `read_accounts`, found by the
    /// `accountReference` of the authorization's callback).
    pub fn push_to_provider(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        account_id: &str,
        version: FhirVersion,
        resource: &serde_json::Value,
    ) -> Result<Authed<()>, Error> {
        let flow = (self.sdk).push_to_provider(contract, token, account_id, version, resource)?;
        self.run(flow, None)
    }

    /// A new provisional storage, to give a user at authorization
    /// (`AuthorizeOptions::storage_id`).
    pub fn create_provisional_storage(&self, contract: &Contract) -> Result<Storage, Error> {
        self.run(self.sdk.create_provisional_storage(contract), None)
    }

    /// The user's storage.
    pub fn user_storage(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> Result<Authed<Storage>, Error> {
        self.run(self.sdk.user_storage(contract, token), None)
    }

    /// The files of a storage folder (`""` or `/`: the application's root), and of its
    /// subfolders with `recursive`.
    pub fn list_storage_files(
        &self,
        contract: &Contract,
        storage: &StorageId,
        folder: &str,
        recursive: bool,
    ) -> Result<StorageFileList, Error> {
        let flow = (self.sdk).list_storage_files(contract, storage, folder, recursive)?;
        self.run(flow, None)
    }

    /// Uploads `body` as `file_name` into `folder`, encrypted to the contract's own key
    /// as it streams (constant memory, sent with a `Content-Length`). The same path
    /// again replaces the file.
    pub fn upload_storage_file<R: Read + Seek>(
        &self,
        contract: &Contract,
        storage: &StorageId,
        folder: &str,
        file_name: &str,
        mut body: R,
    ) -> Result<(), Error> {
        let flow = (self.sdk).upload_storage_file(contract, storage, folder, file_name)?;
        self.run(flow, Some(&mut body))
    }

    /// Downloads a storage file, decrypting it into `sink` as it arrives; `sink` is
    /// flushed at the end. The bytes are only valid once this returns `Ok` (the
    /// envelope has no MAC): on an error, discard what was written.
    pub fn download_storage_file(
        &self,
        contract: &Contract,
        storage: &StorageId,
        path: &str,
        sink: &mut dyn Write,
    ) -> Result<(), Error> {
        self.run_to(
            self.sdk.download_storage_file(contract, storage, path)?,
            sink,
        )
    }

    /// Deletes a storage file (`/a/x.json`), a folder and all in it (`/a/`), or all of
    /// the application's files (`/`).
    pub fn delete_storage_files(
        &self,
        contract: &Contract,
        storage: &StorageId,
        path: &str,
    ) -> Result<(), Error> {
        self.run(
            self.sdk.delete_storage_files(contract, storage, path)?,
            None,
        )
    }
}
