//! The JSON answers of discovery and storage: a page of sources, the facet lists, the
//! sample data sets, a storage and a storage listing, from the same bytes. None may
//! panic; whatever parses must survive its own JSON unchanged.
#![no_main]

use digime_protocol::ClientOperation;
use digime_protocol::discovery::{
    Category, Country, FacetQuery, Platform, QueryFacets, ReadSampleDataSets, SourcesPage,
};
use digime_protocol::storage::{CreateProvisionalStorage, ListStorageFiles, StorageFileList};
use digime_protocol::{Config, StorageId, http};
use libfuzzer_sys::fuzz_target;
use serde::{Serialize, de::DeserializeOwned};

fn answer(data: &[u8]) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(200)
        .body(data.to_vec())
        .expect("a response")
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_vec(value).expect("serialises");
    let again: T = serde_json::from_slice(&json).expect("its own JSON parses");
    assert_eq!(&again, value);
}

fn facets<K: digime_protocol::discovery::facets::FacetKind>(data: &[u8])
where
    K::Item: Serialize + PartialEq + std::fmt::Debug,
{
    let op = QueryFacets::<K>::new(&FacetQuery::default()).expect("an empty query");
    if let Ok(items) = op.parse(answer(data)) {
        round_trip(&items);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = serde_json::from_slice::<SourcesPage>(data) {
        round_trip(&page);
        let _ = page.next_offset();
        for s in &page.data {
            let _ = (s.categories(), s.countries(), s.platforms(), s.is_push());
        }
    }
    facets::<Country>(data);
    facets::<Platform>(data);
    facets::<Category>(data);
    if let Ok(sets) = ReadSampleDataSets::new(16).parse(answer(data)) {
        round_trip(&sets);
    }
    if let Ok(storage) = CreateProvisionalStorage.parse(answer(data)) {
        round_trip(&storage);
    }
    let config = Config::new("App-Id").expect("a config");
    let storage = StorageId::new("st").expect("an id");
    let op = ListStorageFiles::new(&config, storage, "/", true).expect("a folder");
    if let Ok(list) = op.parse(answer(data)) {
        round_trip::<StorageFileList>(&list);
    }
});
