//! What the SDK's own postbox push sends, decoded by the sandbox's server-side decoder:
//! for every size and every chunking, the sandbox gets back exactly the file and the
//! descriptor the client pushed. The client runs sans-IO (no network); its request is
//! taken apart here as a server would: the E0 headers, the multipart body.

use digime_protocol::flow::{Flow, Step};
use digime_protocol::legacy::{Postbox, PostboxAuth};
use digime_protocol::wire::Body;
use digime_protocol::{Config, FileDescriptor, PrivateKey, Sdk, SessionKey};
use digime_sandbox::postbox::{MultipartFile, PostboxDecoder};
use proptest::prelude::*;
use std::sync::OnceLock;
use std::time::SystemTime;

fn postbox_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate().unwrap())
}

/// The request the client would send, with its body encoded as the driver would.
fn client_push(file: &[u8], descriptor: &FileDescriptor, piece: usize) -> http::Request<Vec<u8>> {
    let sdk = Sdk::new(
        Config::new("app")
            .unwrap()
            .with_base_url(digime_protocol::legacy::BASE_URL_V1_4)
            .unwrap(),
    );
    let postbox = Postbox::new("pbx-1", &postbox_key().public_key().to_pkcs1_pem()).unwrap();
    let auth = PostboxAuth::Headers {
        session_key: SessionKey::new("sk-1").unwrap(),
    };
    let mut push = sdk
        .legacy()
        .push_to_postbox(&postbox, auth, "dir/data.bin", descriptor)
        .unwrap();
    let Step::Send(req) = push.poll(SystemTime::now()) else {
        panic!("a push starts with its request")
    };
    let (parts, body) = req.into_parts();
    let Body::Upload(upload) = body else {
        panic!("a postbox push streams an upload")
    };
    assert!(!upload.is_plain(), "a postbox push encrypts its upload");
    let mut encoder = upload.encoder().unwrap();
    let mut bytes = Vec::new();
    for chunk in file.chunks(piece.max(1)) {
        encoder.encode(chunk, &mut bytes).unwrap();
    }
    encoder.finish(&mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, upload.body_len(file.len() as u64));
    http::Request::from_parts(parts, bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn the_sandbox_decodes_whatever_the_client_pushes(
        file in proptest::collection::vec(any::<u8>(), 0..70_000),
        piece in 1usize..9000,
        server_piece in 1usize..9000,
        tag in "[a-z\u{e9}\u{1f600}]{0,12}",
    ) {
        let mut descriptor = FileDescriptor::new("application/octet-stream");
        descriptor.tags = Some(vec![tag]);
        let req = client_push(&file, &descriptor, piece);
        let header = |name: &str| req.headers()[name].to_str().unwrap().to_owned();
        let mut multipart = MultipartFile::from_content_type(&header("content-type")).unwrap();
        let mut decoder = PostboxDecoder::new(
            postbox_key(),
            &header("symmetricalkey"),
            &header("iv"),
            &header("metadata"),
        )
        .unwrap();
        let (mut cipher, mut plain) = (Vec::new(), Vec::new());
        for chunk in req.body().chunks(server_piece) {
            cipher.clear();
            multipart.feed(chunk, &mut cipher).unwrap();
            decoder.update(&cipher, &mut plain).unwrap();
        }
        prop_assert!(multipart.is_done());
        multipart.finish().unwrap();
        let got = decoder.finish(&mut plain).unwrap();
        prop_assert_eq!(plain, file);
        prop_assert_eq!(got, serde_json::to_value(&descriptor).unwrap());
    }
}
