use super::*;

#[test]
fn retry_after_saturates_and_refuses_negatives() {
    let at = |v: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, v.parse().unwrap());
        retry_after_ms(&h)
    };
    assert_eq!(at("3"), Some(3_000));
    assert_eq!(at(" 99999999999 "), Some(99_999_999_999_000));
    assert_eq!(at("9223372036854775807"), Some(i64::MAX));
    assert_eq!(at("-5"), None);
    assert_eq!(at("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    assert_eq!(retry_after_ms(&reqwest::header::HeaderMap::new()), None);
}

#[test]
fn attempts_are_spread_over_the_providers_in_blocks() {
    let order = |n: usize, attempts: u8| -> Vec<usize> {
        (1..=attempts + 1)
            .map(|a| provider_index(n, attempts, a))
            .collect()
    };
    assert_eq!(order(1, 4), [0, 0, 0, 0, 0]);
    assert_eq!(order(2, 4), [0, 0, 1, 1, 1]);
    assert_eq!(order(2, 3), [0, 0, 1, 1]);
    assert_eq!(order(3, 3), [0, 1, 2, 2]);
    assert_eq!(order(3, 6), [0, 0, 1, 1, 2, 2, 2]);
    // Fewer attempts than providers: the later ones are never reached
    // (an attempt past the count — which the core never orders — takes the last).
    assert_eq!(order(3, 1), [0, 2]);
    assert_eq!(provider_index(2, 0, 0), 0);
}

/// The transport rows every provider shares: nobody listening is
/// transient; a request taken but never answered is ambiguous.
#[tokio::test]
async fn transport_failures() {
    let http = reqwest::Client::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = http
        .post(format!("http://127.0.0.1:{port}/sms/send"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        transport_outcome("SMS.ru", &e),
        SendOutcome::Transient { .. }
    ));

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (socket, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(socket);
    });
    let e = http
        .post(format!("http://{addr}/sys/send.php"))
        .timeout(Duration::from_millis(200))
        .body("mes=x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        transport_outcome("SMSC", &e),
        SendOutcome::Ambiguous {
            reason: "SMSC: no answer within the timeout after sending".into()
        }
    );
    hold.abort();
}

#[test]
fn providers_are_read_from_provider_or_providers() {
    let channel = |pairs: &[(&str, &str)]| {
        settings::from_pairs(crate::core::ChannelKind::Sms, pairs)
            .map(|s| s.as_sms().expect("sms").providers().to_vec())
    };
    assert_eq!(channel(&[("provider", "smsc")]), Ok(vec![Provider::Smsc]));
    assert_eq!(
        channel(&[("providers", "smsru, smsc,generic")]),
        Ok(vec![Provider::SmsRu, Provider::Smsc, Provider::Generic])
    );
    assert!(channel(&[]).is_err());
    assert!(channel(&[("providers", " , ")]).is_err());
    assert!(channel(&[("providers", "smsru,smsaero")]).is_err());
    assert!(channel(&[("provider", "smsru"), ("providers", "smsc")]).is_err());
}

#[test]
fn numeric_ids_are_stable_and_in_range() {
    let a = numeric_id("order-1001:delayed:1");
    assert_eq!(a, numeric_id("order-1001:delayed:1"));
    assert_ne!(a, numeric_id("order-1001:delayed:0"));
    for i in 0..10_000 {
        let id = numeric_id(&format!("n-{i}:0"));
        assert!((1..=2_147_483_647).contains(&id));
    }
}

#[test]
fn the_text_decides_encoding_and_segments() {
    // Cyrillic is UCS-2: 70 a single SMS, 67 a part.
    let ru = |n| "ж".repeat(n);
    assert_eq!(sms_segments(&ru(70)).0, SmsEncoding::Ucs2);
    assert_eq!(sms_segments(&ru(70)).1, 1);
    assert_eq!(sms_segments(&ru(71)).1, 2);
    assert_eq!(sms_segments("Заказ 1001 задерживается на 2 дня").1, 1);
    assert_eq!(sms_segments(&"a".repeat(160)), (SmsEncoding::Gsm7, 1, 160));
}
