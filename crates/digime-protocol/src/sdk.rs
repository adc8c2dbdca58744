//! The entry point of the core: configuration plus shared state (the key-set cache).

use crate::auth::PullOptions;
use crate::auth::ReadContractDetails;
use crate::auth::token_reference::{OnboardPage, reauthorize_flow};
use crate::auth::{AuthorizationCode, AuthorizeOptions};
use crate::auth::{AuthorizeFlow, TokenFlow};
use crate::auth::{
    OnboardFlow, OnboardServiceOptions, ReauthorizeAccountOptions, ReauthorizeFlow,
    ReauthorizeOptions, RevokeAccountPermission, check_callback, check_locale, check_sample_data,
    check_token,
};
use crate::call::ClientCall;
use crate::config::{Config, Contract};
use crate::config::{SessionKey, StorageId};
use crate::delete::{DeleteAccount, DeleteUser};
use crate::discovery::{
    Category, Country, FacetQuery, Platform, QueryFacets, QuerySources, ReadSampleDataSets,
    SourcesQuery,
};
use crate::error::Error;
use crate::file::{Output, ReadFile};
use crate::jwks::{KeySet, KeySetCache};
use crate::provider::{FhirVersion, PushToProvider};
use crate::push::{FileDescriptor, PushToLibrary};
use crate::read::{ReadAccounts, ReadFileList, ReadFileMetadata, ReadSession};
use crate::read_all::{ReadAllFiles, ReadAllOptions};
use crate::refresh::{AuthedCall, UserOperation};
use crate::report::{PortabilityReport, PortabilityReportOptions, ReportRequest};
use crate::storage::files::{self as storage_files, DownloadStorageFile};
use crate::storage::{
    CreateProvisionalStorage, DeleteStorageFiles, ListStorageFiles, ReadUserStorage,
    UploadStorageFile,
};
use crate::stream::{Plain, Streamed};
use crate::token::UserAccessToken;
use digime_crypto::CodeVerifier;
use std::sync::Arc;

fn check_file_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::InvalidInput("file name cannot be empty".into()));
    }
    Ok(())
}

/// The sans-IO SDK: hands out flows for drivers to run. Cheap to clone; clones share
/// the server key-set cache.
#[derive(Debug, Clone)]
pub struct Sdk {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    keys: KeySetCache,
    refreshes: crate::single_flight::Refreshes,
}

impl Sdk {
    /// An SDK with this configuration.
    pub fn new(config: Config) -> Self {
        Sdk {
            inner: Arc::new(Inner {
                config,
                keys: KeySetCache::default(),
                refreshes: Default::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The server key-set cache.
    pub fn key_cache(&self) -> &KeySetCache {
        &self.inner.keys
    }

    /// The refreshes shared by this SDK's calls ([`crate::single_flight`]).
    pub(crate) fn refreshes(&self) -> &crate::single_flight::Refreshes {
        &self.inner.refreshes
    }

    /// Trusts these server keys, and only these: a pin. No key set is fetched from then
    /// on, and a token signed by another key is refused ([`Error::UnknownSigningKey`]).
    pub fn use_static_server_keys(&self, keys: KeySet) {
        self.inner.keys.install_static(keys);
    }

    /// Starts an authorization: the flow yields the onboard URL, the PKCE verifier to
    /// keep, and the session. `state` is echoed on the callback; bind it to the user's
    /// browser session and check it there.
    pub fn authorize_url(
        &self,
        contract: &Contract,
        callback: &str,
        state: &str,
        options: AuthorizeOptions,
    ) -> Result<AuthorizeFlow, Error> {
        check_callback(callback)?;
        if state.is_empty() {
            // An empty state binds the callback to nothing, and never verifies.
            return Err(Error::InvalidInput(
                "state cannot be empty: bind it to the user's browser session".into(),
            ));
        }
        options.validate()?;
        AuthorizeFlow::new(
            self.clone(),
            contract.clone(),
            callback.to_owned(),
            state.to_owned(),
            options,
        )
    }

    /// Starts a user's reauthorization, for when the refresh token has died
    /// ([`Error::needs_reauthorization`]): the flow yields the `user-reauth` page's URL,
    /// the PKCE verifier to keep and the session. The callback is parsed with
    /// [`crate::parse_callback`] and its code exchanged with
    /// [`Sdk::exchange_code_for_token`], giving the same user a new token. `token` is the
    /// user's last token; its access token may have expired, and this call never
    /// refreshes it.
    pub fn reauthorize_url(
        &self,
        contract: &Contract,
        callback: &str,
        token: &UserAccessToken,
        options: ReauthorizeOptions,
    ) -> Result<ReauthorizeFlow, Error> {
        check_callback(callback)?;
        check_token(token)?;
        check_locale(options.locale.as_deref())?;
        reauthorize_flow(self.clone(), contract.clone(), token, callback, options)
    }

    /// Adds a service to an authorized user's library: the flow yields the `onboard`
    /// page's URL and the session that reads the new data. The callback
    /// ([`crate::parse_onboard_callback`]) has no code: the user's token stays valid.
    pub fn onboard_service_url(
        &self,
        contract: &Contract,
        callback: &str,
        token: &UserAccessToken,
        options: OnboardServiceOptions,
    ) -> Result<OnboardFlow, Error> {
        check_callback(callback)?;
        check_token(token)?;
        check_locale(options.locale.as_deref())?;
        check_sample_data(options.sample_data.as_ref())?;
        Ok(OnboardPage::onboard(
            self.clone(),
            contract.clone(),
            token.clone(),
            callback,
            options,
        ))
    }

    /// Sends the user to repair one account whose source needs them again (a file
    /// list's `ServiceAuthorizationError`, 511): the flow yields the `reauthorize`
    /// page's URL. The callback is parsed with [`crate::parse_onboard_callback`].
    pub fn reauthorize_account_url(
        &self,
        contract: &Contract,
        callback: &str,
        token: &UserAccessToken,
        account_id: &str,
        options: ReauthorizeAccountOptions,
    ) -> Result<OnboardFlow, Error> {
        check_callback(callback)?;
        check_token(token)?;
        crate::wire::account_id_header(account_id)?;
        check_locale(options.locale.as_deref())?;
        Ok(OnboardPage::reauthorize_account(
            self.clone(),
            contract.clone(),
            token.clone(),
            callback,
            account_id,
            options,
        ))
    }

    /// The page where the user withdraws this contract's permission to one account
    /// (GET `permission-access/revoke/h:accountId`): the flow yields its location. The
    /// user comes back to `redirect_uri`; parse that with [`crate::parse_revoke_callback`].
    pub fn revoke_account_permission_url(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        account_id: &str,
        redirect_uri: &str,
    ) -> Result<AuthedCall<RevokeAccountPermission>, Error> {
        check_callback(redirect_uri)?;
        let op = RevokeAccountPermission::new(account_id, redirect_uri)?;
        Ok(self.call(contract, token, op))
    }

    /// Deletes the user, their library and every token of theirs (DELETE `user`).
    pub fn delete_user(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> AuthedCall<DeleteUser> {
        self.call(contract, token, DeleteUser)
    }

    /// Deletes one of the user's accounts and its data (DELETE
    /// `permission-access/service/h:accountId`).
    pub fn delete_account(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        account_id: &str,
    ) -> Result<AuthedCall<DeleteAccount>, Error> {
        Ok(self.call(contract, token, DeleteAccount::new(account_id)?))
    }

    /// Exchanges the callback's code and the stored verifier for a token.
    pub fn exchange_code_for_token(
        &self,
        contract: &Contract,
        code: &AuthorizationCode,
        verifier: &CodeVerifier,
    ) -> Result<TokenFlow, Error> {
        if code.expose().is_empty() || verifier.expose().is_empty() {
            return Err(Error::InvalidInput(
                "authorization code and code verifier are required".into(),
            ));
        }
        Ok(TokenFlow::exchange(
            self.clone(),
            contract.clone(),
            code.expose(),
            verifier.clone(),
        ))
    }

    /// Refreshes a token. A refused refresh is [`Error::ReauthorizationRequired`].
    pub fn refresh_token(&self, contract: &Contract, token: &UserAccessToken) -> TokenFlow {
        TokenFlow::refresh(self.clone(), contract.clone(), token)
    }

    /// Pushes a file into the user's library. The descriptor is checked here, before
    /// any IO; the body is the driver's to stream ([`crate::wire::Body::Upload`]).
    pub fn push_to_library(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        descriptor: &FileDescriptor,
    ) -> Result<AuthedCall<PushToLibrary>, Error> {
        descriptor.validate()?;
        Ok(self.call(contract, token, PushToLibrary::new(descriptor.clone())))
    }

    /// Starts a read session (`POST permission-access/trigger`): the user's sources
    /// sync, and the session key reads the file list and the files.
    pub fn read_session(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        options: &PullOptions,
    ) -> AuthedCall<ReadSession> {
        self.call(contract, token, ReadSession::new(options.clone()))
    }

    /// The session's file list and sync status.
    pub fn read_file_list(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
    ) -> AuthedCall<ReadFileList> {
        self.call(contract, token, ReadFileList::new(session.clone()))
    }

    /// Downloads, decrypts and decompresses one file; see [`Output`] for where the
    /// plaintext goes.
    pub fn read_file(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
        output: Output,
    ) -> Result<ReadFile, Error> {
        check_file_name(file_name)?;
        Ok(ReadFile::new(
            self.clone(),
            contract.clone(),
            token.clone(),
            session.clone(),
            file_name.to_owned(),
            output,
        ))
    }

    /// A file's metadata without its body (`HEAD`).
    pub fn read_file_metadata(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        file_name: &str,
    ) -> Result<AuthedCall<ReadFileMetadata>, Error> {
        check_file_name(file_name)?;
        Ok(self.call(
            contract,
            token,
            ReadFileMetadata::head(session.clone(), file_name.to_owned()),
        ))
    }

    /// The user's source accounts.
    pub fn read_accounts(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> AuthedCall<ReadAccounts> {
        self.call(contract, token, ReadAccounts)
    }

    /// Reads every file of a session as its sync goes on; see [`crate::read_all`].
    pub fn read_all_files<T>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        session: &SessionKey,
        options: ReadAllOptions,
    ) -> ReadAllFiles<T> {
        ReadAllFiles::new(
            self.clone(),
            contract.clone(),
            token.clone(),
            session.clone(),
            options,
        )
    }

    /// What the contract allows (GET `permission-access/contract`).
    pub fn contract_details(&self, contract: &Contract) -> ClientCall<ReadContractDetails> {
        self.client_call(contract, ReadContractDetails)
    }

    /// The sources a user can onboard (POST `discovery/sources`): approved pull
    /// sources unless the query's filter says otherwise, one page at a time
    /// ([`crate::discovery::SourcesPage::next_offset`]).
    pub fn query_sources(
        &self,
        contract: &Contract,
        query: &SourcesQuery,
    ) -> Result<ClientCall<QuerySources>, Error> {
        Ok(self.client_call(contract, QuerySources::new(query)?))
    }

    /// The countries sources are in (POST `discovery/countries`).
    pub fn query_countries(
        &self,
        contract: &Contract,
        query: &FacetQuery,
    ) -> Result<ClientCall<QueryFacets<Country>>, Error> {
        Ok(self.client_call(contract, QueryFacets::new(query)?))
    }

    /// The platforms of sources (POST `discovery/platforms`).
    pub fn query_platforms(
        &self,
        contract: &Contract,
        query: &FacetQuery,
    ) -> Result<ClientCall<QueryFacets<Platform>>, Error> {
        Ok(self.client_call(contract, QueryFacets::new(query)?))
    }

    /// The categories of sources (POST `discovery/categories`).
    pub fn query_categories(
        &self,
        contract: &Contract,
        query: &FacetQuery,
    ) -> Result<ClientCall<QueryFacets<Category>>, Error> {
        Ok(self.client_call(contract, QueryFacets::new(query)?))
    }

    /// A source's sample data sets (GET `permission-access/sample/datasets/{sourceId}`),
    /// by id: the `data_set` of [`crate::auth::SampleData`].
    pub fn service_sample_data_sets(
        &self,
        contract: &Contract,
        source_id: u64,
    ) -> ClientCall<ReadSampleDataSets> {
        self.client_call(contract, ReadSampleDataSets::new(source_id))
    }

    /// The user's portability report (GET `export/{serviceType}/report`), streamed to
    /// the driver's sink.
    pub fn portability_report(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        options: &PortabilityReportOptions,
    ) -> Result<PortabilityReport, Error> {
        let request = self.call(contract, token, ReportRequest::new(options)?);
        Ok(Streamed::new(request, Plain))
    }

    /// Pushes a FHIR resource (a JSON object) to the health provider of one of the
    /// user's push accounts (POST `permission-access/import/h:accountId/fhir/{version}`).
    pub fn push_to_provider(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        account_id: &str,
        version: FhirVersion,
        resource: &serde_json::Value,
    ) -> Result<AuthedCall<PushToProvider>, Error> {
        let op = PushToProvider::new(account_id, version, resource)?;
        Ok(self.call(contract, token, op))
    }

    /// A new provisional storage (POST `storage`), to give a user at authorization
    /// ([`AuthorizeOptions::storage_id`]).
    pub fn create_provisional_storage(
        &self,
        contract: &Contract,
    ) -> ClientCall<CreateProvisionalStorage> {
        self.client_call(contract, CreateProvisionalStorage)
    }

    /// The user's storage (GET `storage`).
    pub fn user_storage(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
    ) -> AuthedCall<ReadUserStorage> {
        self.call(contract, token, ReadUserStorage)
    }

    /// The files of a storage folder (`""` or `/` is the application's root), and of
    /// its subfolders with `recursive`.
    pub fn list_storage_files(
        &self,
        contract: &Contract,
        storage: &StorageId,
        folder: &str,
        recursive: bool,
    ) -> Result<ClientCall<ListStorageFiles>, Error> {
        let op = ListStorageFiles::new(self.config(), storage.clone(), folder, recursive)?;
        Ok(self.client_call(contract, op))
    }

    /// Uploads a file into a storage folder, encrypted to the contract's own key as
    /// it streams; the body is the driver's to stream ([`crate::wire::Body::Upload`]).
    pub fn upload_storage_file(
        &self,
        contract: &Contract,
        storage: &StorageId,
        folder: &str,
        file_name: &str,
    ) -> Result<ClientCall<UploadStorageFile>, Error> {
        let op = UploadStorageFile::new(storage.clone(), folder, file_name)?;
        Ok(self.client_call(contract, op))
    }

    /// Downloads a storage file, decrypted as it streams to the driver's sink.
    pub fn download_storage_file(
        &self,
        contract: &Contract,
        storage: &StorageId,
        path: &str,
    ) -> Result<DownloadStorageFile, Error> {
        storage_files::download(self.clone(), contract.clone(), storage.clone(), path)
    }

    /// Deletes a storage file (`/a/x.json`), a folder and all in it (`/a/`), or all
    /// of the application's files (`/`).
    pub fn delete_storage_files(
        &self,
        contract: &Contract,
        storage: &StorageId,
        path: &str,
    ) -> Result<ClientCall<DeleteStorageFiles>, Error> {
        let op = DeleteStorageFiles::new(storage.clone(), path)?;
        Ok(self.client_call(contract, op))
    }

    fn client_call<O: crate::call::ClientOperation>(
        &self,
        contract: &Contract,
        op: O,
    ) -> ClientCall<O> {
        ClientCall::new(self.clone(), contract.clone(), op)
    }

    /// Runs any user-token operation with refresh-on-401.
    pub fn call<O: UserOperation>(
        &self,
        contract: &Contract,
        token: &UserAccessToken,
        op: O,
    ) -> AuthedCall<O> {
        AuthedCall::new(self.clone(), contract.clone(), token.clone(), op)
    }
}
