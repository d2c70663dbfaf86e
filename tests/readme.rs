//! The README's sentences, checked one by one against the crate (each test names the README
//! lines it checks): what is retried and hedged, when the breaker trips and what it serves,
//! the defaults it states, what errors print, what the limiters and signers do, and the stack
//! to copy under a failing host.

mod retrying_hedging_breaker {

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http_doer::breaker::{ServeStale, StaleAnswer};
    use http_doer::hedging::HedgeReport;
    use http_doer::retrying::Attempts;
    use http_doer::testing::{ScriptedDoer, doer_fn, response};
    use http_doer::{Body, Doer, DoerExt, Error, ErrorKind, Request};

    fn get(url: &str) -> Request {
        http::Request::get(url).body(Body::empty()).unwrap()
    }

    // README 494-495: Retry-After on 429 and 503, capped by max_delay.
    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_capped() {
        let mut r = response(503, "busy");
        r.headers_mut().insert("retry-after", "7".parse().unwrap());
        let doer = ScriptedDoer::new().then(Ok(r)).then_status(200);
        let d = doer
            .clone()
            .retrying()
            .budget(http_doer::retrying::RetryBudget::new(0.2, 10));
        let t0 = tokio::time::Instant::now();
        let resp = d.execute(get("http://a.test/")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(t0.elapsed(), Duration::from_secs(7));
        let mut r = response(429, "busy");
        r.headers_mut()
            .insert("retry-after", "1000".parse().unwrap());
        let doer = ScriptedDoer::new().then(Ok(r)).then_status(200);
        let d = doer.clone().retrying();
        let t0 = tokio::time::Instant::now();
        d.execute(get("http://a.test/")).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(30));
    }

    // README 496-500: a wait that would reach the deadline is not started; the last outcome is returned at once.
    #[tokio::test(start_paused = true)]
    async fn total_timeout_returns_the_503_at_once() {
        let mut r = response(503, "busy");
        r.headers_mut().insert("retry-after", "20".parse().unwrap());
        let doer = ScriptedDoer::new().then(Ok(r)).then_status(200);
        let d = doer
            .clone()
            .retrying()
            .total_timeout(Duration::from_secs(10));
        let t0 = tokio::time::Instant::now();
        let resp = d.execute(get("http://a.test/")).await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert_eq!(resp.extensions().get::<Attempts>().map(|a| a.0), Some(1));
    }

    // README 485-489: methods and kinds.
    #[tokio::test(start_paused = true)]
    async fn retries_what_is_safe() {
        for (method, idem, status, want) in [
            ("POST", false, 503, 1usize),
            ("POST", true, 503, 4),
            ("PATCH", false, 500, 1),
            ("GET", false, 501, 1),
            ("GET", false, 404, 1),
            ("GET", false, 408, 4),
            ("OPTIONS", false, 502, 4),
            ("TRACE", false, 504, 4),
            ("DELETE", false, 429, 4),
        ] {
            let doer = ScriptedDoer::new();
            for _ in 0..6 {
                doer.push(Ok(response(status, "x")));
            }
            let mut b = http::Request::builder()
                .method(method)
                .uri("http://a.test/");
            if idem {
                b = b.header("idempotency-key", "k1");
            }
            let d = doer.clone().retrying();
            let _ = d.execute(b.body(Body::from("hi")).unwrap()).await;
            assert_eq!(doer.calls(), want, "{method} idem={idem} {status}");
        }
        for (method, kind, want) in [
            ("POST", ErrorKind::Connect, 4usize),
            ("POST", ErrorKind::Timeout, 1),
            ("GET", ErrorKind::Timeout, 4),
            ("GET", ErrorKind::Transport, 4),
            ("GET", ErrorKind::Body, 4),
            ("GET", ErrorKind::Tls, 1),
            ("GET", ErrorKind::InvalidRequest, 1),
            ("GET", ErrorKind::BreakerOpen, 1),
            ("GET", ErrorKind::RateLimited, 1),
            ("GET", ErrorKind::ConcurrencyLimited, 1),
        ] {
            let doer = ScriptedDoer::new();
            for _ in 0..6 {
                doer.push(Err(Error::new(kind, "scripted")));
            }
            let d = doer.clone().retrying();
            let b = http::Request::builder()
                .method(method)
                .uri("http://a.test/");
            let _ = d.execute(b.body(Body::from("hi")).unwrap()).await;
            assert_eq!(doer.calls(), want, "{method} {kind:?}");
        }
    }

    // README 640-643: POST not hedged, carries no HedgeReport; GET hedged after 10 ms from a cold start.
    #[tokio::test(start_paused = true)]
    async fn hedging_defaults() {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let d = doer_fn(move |_req: Request| {
            let i = n2.fetch_add(1, Ordering::SeqCst);
            async move {
                if i == 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok::<_, Error>(response(200, "ok"))
            }
        })
        .hedging();
        let t0 = tokio::time::Instant::now();
        let resp = d.execute(get("http://a.test/")).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_millis(10));
        let rep = resp.extensions().get::<HedgeReport>().copied().unwrap();
        assert_eq!(rep.copies_sent, 2);
        assert_eq!(rep.winner, 1);
        let resp = d
            .execute(
                http::Request::post("http://a.test/")
                    .body(Body::from("x"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(resp.extensions().get::<HedgeReport>().is_none());
    }

    // README 636-639: a fast 503 does not beat a 200; when all fail, a response before an error.
    #[tokio::test(start_paused = true)]
    async fn hedging_who_wins() {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let d = doer_fn(move |_req: Request| {
            let i = n2.fetch_add(1, Ordering::SeqCst);
            async move {
                if i == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, Error>(response(200, "slow good"))
                } else {
                    Ok(response(503, "fast bad"))
                }
            }
        })
        .hedging();
        let resp = d.execute(get("http://a.test/")).await.unwrap();
        assert_eq!(resp.status(), 200);

        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let d = doer_fn(move |_req: Request| {
            let i = n2.fetch_add(1, Ordering::SeqCst);
            async move {
                if i == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, Error>(response(503, "bad"))
                } else {
                    Err(Error::new(ErrorKind::Connect, "refused"))
                }
            }
        })
        .hedging();
        let resp = d.execute(get("http://a.test/")).await.unwrap();
        assert_eq!(resp.status(), 503);
    }

    // README 689-695: trips on the 5th failure in a row; open 10 s; BreakerOpen; retry_after.
    #[tokio::test(start_paused = true)]
    async fn breaker_defaults() {
        let doer = ScriptedDoer::new();
        for _ in 0..10 {
            doer.push(Ok(response(500, "x")));
        }
        let b = doer.clone().breaker();
        for _ in 0..5 {
            assert_eq!(
                b.execute(get("http://a.test/")).await.unwrap().status(),
                500
            );
        }
        let err = b.execute(get("http://a.test/")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BreakerOpen);
        assert_eq!(doer.calls(), 5);
        let ra = err.retry_after().unwrap();
        assert!(
            ra <= Duration::from_secs(10) && ra > Duration::from_secs(9),
            "{ra:?}"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        let _ = b.execute(get("http://a.test/")).await;
        assert_eq!(doer.calls(), 6, "the probe goes after 10 s");
    }

    // README 698-700: a 4xx is a success; caller errors are ignored.
    #[tokio::test(start_paused = true)]
    async fn breaker_counts() {
        let doer = ScriptedDoer::new();
        for i in 0..40 {
            if i % 2 == 0 {
                doer.push(Ok(response(500, "x")));
            } else {
                doer.push(Ok(response(404, "x")));
            }
        }
        let b = doer.clone().breaker();
        // half failing: 20 calls in the window, half failed -> trips
        let mut opened_at = None;
        for i in 0..40 {
            if let Err(e) = b.execute(get("http://a.test/")).await {
                assert_eq!(e.kind(), ErrorKind::BreakerOpen);
                opened_at = Some(i);
                break;
            }
        }
        assert_eq!(opened_at, Some(20), "trips once 20 calls, half failed");
    }

    // README 708-717: serve-stale: Age header, StaleAnswer, no Set-Cookie, no 206.
    #[tokio::test(start_paused = true)]
    async fn serve_stale_rules() {
        let doer = ScriptedDoer::new();
        doer.push(Ok(response(200, "good")));
        let mut sc = response(200, "cookie");
        sc.headers_mut()
            .insert("set-cookie", "a=b".parse().unwrap());
        doer.push(Ok(sc));
        let mut partial = response(206, "part");
        partial
            .headers_mut()
            .insert("content-range", "bytes 0-3/10".parse().unwrap());
        doer.push(Ok(partial));
        for _ in 0..10 {
            doer.push(Ok(response(500, "x")));
        }
        let b = doer
            .clone()
            .breaker()
            .serve_stale(ServeStale::new(Duration::from_secs(300)));
        b.execute(get("http://a.test/good")).await.unwrap();
        b.execute(get("http://a.test/cookie")).await.unwrap();
        b.execute(get("http://a.test/part")).await.unwrap();
        for _ in 0..5 {
            b.execute(get("http://a.test/x")).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        let resp = b.execute(get("http://a.test/good")).await.unwrap();
        assert!(resp.extensions().get::<StaleAnswer>().is_some());
        assert_eq!(resp.headers()["age"], "3");
        assert_eq!(resp.into_body().text().await.unwrap(), "good");
        assert_eq!(
            b.execute(get("http://a.test/cookie"))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::BreakerOpen
        );
        assert_eq!(
            b.execute(get("http://a.test/part"))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::BreakerOpen
        );
    }

    // README 207-209: Display and Debug never print credentials.
    #[tokio::test]
    async fn error_display_redacts() {
        let d = http_doer::ReqwestDoer::new();
        for url in [
            "http://alice:pw-secret@127.0.0.1:1/x?api_key=K1SECRET&token=T1SECRET&password=P1SECRET&signature=S1SECRET&sig=G1SECRET",
        ] {
            let err = d.execute(get(url)).await.unwrap_err();
            let s = format!("{err} {err:?}");
            for secret in [
                "pw-secret",
                "K1SECRET",
                "T1SECRET",
                "P1SECRET",
                "S1SECRET",
                "G1SECRET",
            ] {
                assert!(!s.contains(secret), "{secret} in {s}");
            }
        }
    }

    // README 1430: then_after / ScriptedDoer record every request.
    #[tokio::test(start_paused = true)]
    async fn stack_to_copy_under_failing_host() {
        let doer = ScriptedDoer::new();
        doer.push(Ok(response(200, "good")));
        for _ in 0..100 {
            doer.push(Ok(response(503, "down")));
        }
        let http = doer
            .clone()
            .signing(http_doer::signing::Bearer::new("tok").unwrap())
            .breaker()
            .serve_stale(ServeStale::new(Duration::from_secs(300)))
            .hedging()
            .retrying()
            .total_timeout(Duration::from_secs(10))
            .logging()
            .shared();
        let r = http.execute(get("http://a.test/p")).await.unwrap();
        assert_eq!(r.status(), 200);
        let r = http.execute(get("http://a.test/p")).await.unwrap();
        // the host fails: retried, breaker opens after 5, then stale.
        assert_eq!(r.status(), 200, "served stale");
        assert!(r.extensions().get::<StaleAnswer>().is_some());
        assert!(doer.calls() <= 6, "{}", doer.calls());
        for req in doer.requests() {
            assert_eq!(req.headers()["authorization"], "Bearer tok");
        }
        let _ = Mutex::new(0);
    }
}

mod limits_signing_and_more {

    use std::sync::Arc;

    use std::time::Duration;

    use http_doer::breaker::{ServeStale, StaleAnswer};
    use http_doer::limit::{Rate, RateWait};
    use http_doer::retrying::{Attempts, MaxRetries};
    use http_doer::testing::{ScriptedDoer, doer_fn, response};
    use http_doer::{Body, Doer, DoerExt, Error, ErrorKind, Request};

    fn get(url: &str) -> Request {
        http::Request::get(url).body(Body::empty()).unwrap()
    }

    fn ok_doer() -> impl Doer + Clone {
        doer_fn(|_req: Request| async { Ok::<_, Error>(response(200, "ok")) })
    }

    // README 480-482
    #[tokio::test(start_paused = true)]
    async fn max_retries_counts_retries_and_extension_overrides() {
        let doer = ScriptedDoer::new();
        for _ in 0..10 {
            doer.push(Ok(response(503, "x")));
        }
        let d = doer.clone().retrying().max_retries(2);
        let r = d.execute(get("http://a.test/")).await.unwrap();
        assert_eq!(doer.calls(), 3);
        assert_eq!(r.extensions().get::<Attempts>().map(|a| a.0), Some(3));
        let mut req = get("http://a.test/");
        req.extensions_mut().insert(MaxRetries(0));
        let _ = d.execute(req).await.unwrap();
        assert_eq!(doer.calls(), 4);
    }

    // README 850-851, 863-864
    #[tokio::test(start_paused = true)]
    async fn local_rate_exact() {
        let d = ok_doer().rate_limiting(Rate::per_second(100));
        let t0 = tokio::time::Instant::now();
        let mut waited = 0;
        for _ in 0..1000 {
            let r = d.execute(get("http://a.test/")).await.unwrap();
            if r.extensions().get::<RateWait>().is_some() {
                waited += 1;
            }
        }
        assert_eq!(t0.elapsed(), Duration::from_millis(9990));
        assert_eq!(waited, 999);
    }

    // README 852-855: fails at once past max_wait with RateLimited and retry_after
    #[tokio::test(start_paused = true)]
    async fn rate_limited_past_max_wait() {
        let d = ok_doer()
            .rate_limiting(Rate::per_second(1))
            .max_wait(Duration::from_millis(500));
        d.execute(get("http://a.test/")).await.unwrap();
        let t0 = tokio::time::Instant::now();
        let err = d.execute(get("http://a.test/")).await.unwrap_err();
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        assert!(err.retry_after().is_some());
    }

    // README 856-857: a 429 pauses the key for its Retry-After else 1 s
    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_one_second() {
        let doer = ScriptedDoer::new().then_status(429).then_status(200);
        let d = doer.clone().rate_limiting(Rate::unlimited());
        let r = d.execute(get("http://a.test/")).await.unwrap();
        assert_eq!(r.status(), 429);
        let t0 = tokio::time::Instant::now();
        d.execute(get("http://a.test/")).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(1));
    }

    // README 875-877: queue of 64, past it ConcurrencyLimited at once; max_wait 10 s
    #[tokio::test(start_paused = true)]
    async fn concurrency_defaults() {
        let d = Arc::new(
            doer_fn(|_req: Request| async {
                tokio::time::sleep(Duration::from_secs(100)).await;
                Ok::<_, Error>(response(200, "ok"))
            })
            .concurrency_limit(1),
        );
        let mut hs = vec![];
        for _ in 0..65 {
            let d = d.clone();
            hs.push(tokio::spawn(async move {
                d.execute(get("http://a.test/")).await
            }));
        }
        tokio::task::yield_now().await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let err = d.execute(get("http://a.test/")).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::ConcurrencyLimited,
            "the 66th: queue full"
        );
        let t0 = tokio::time::Instant::now();
        let r = hs.pop().unwrap().await.unwrap();
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ConcurrencyLimited);
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
    }

    // README 794: a user-id with ':' is refused; 796 ApiKey::query replaces one of the same name
    #[tokio::test]
    async fn signers() {
        use http_doer::signing::{ApiKey, Basic};
        assert!(Basic::new("a:b", "pw").is_err());
        let doer = ScriptedDoer::new().then_status(200);
        let d = doer.clone().signing(ApiKey::query("key", "NEW").unwrap());
        d.execute(get("http://a.test/p?a=1&key=OLD&b=2"))
            .await
            .unwrap();
        let q = doer.requests()[0].uri().query().unwrap().to_owned();
        assert!(
            !q.contains("OLD") && q.contains("key=NEW") && q.contains("a=1") && q.contains("b=2"),
            "{q}"
        );
    }

    // README 830-832: a signer that fails stops the request with Signing; nothing is sent
    #[tokio::test]
    async fn failing_signer() {
        let doer = ScriptedDoer::new().then_status(200);
        let d = doer
            .clone()
            .signing(|_req: &mut Request| -> Result<(), Error> {
                Err(Error::new(ErrorKind::Other, "no key"))
            });
        let err = d.execute(get("http://a.test/")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Signing, "{err}");
        assert_eq!(doer.calls(), 0);
    }

    // README 697-700: caller's-business errors and limiter refusals are ignored by the breaker
    #[tokio::test(start_paused = true)]
    async fn breaker_ignores() {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::Signing,
            ErrorKind::Redirect,
            ErrorKind::TooLarge,
            ErrorKind::Decode,
            ErrorKind::RateLimited,
            ErrorKind::ConcurrencyLimited,
        ] {
            let doer = ScriptedDoer::new();
            for _ in 0..8 {
                doer.push(Err(Error::new(kind, "x")));
            }
            let b = doer.clone().breaker();
            for _ in 0..8 {
                let e = b.execute(get("http://a.test/")).await.unwrap_err();
                assert_eq!(e.kind(), kind, "{kind:?} counted");
            }
        }
    }

    // README 1556: an injected error says `injected by Chaos`
    #[tokio::test]
    async fn chaos_error_says_so() {
        let d = ok_doer().chaos().fault(1.0, ErrorKind::Connect).seed(1);
        let e = d.execute(get("http://a.test/")).await.unwrap_err();
        assert!(e.to_string().contains("injected by Chaos"), "{e}");
        assert!(http_doer::chaos::Injected::of(&e).is_some());
    }

    // README 714-716: a request's max-age caps the age of the answer; min-fresh / no-cache skip.
    #[tokio::test(start_paused = true)]
    async fn stale_request_directives() {
        let doer = ScriptedDoer::new();
        doer.push(Ok(response(200, "good")));
        for _ in 0..20 {
            doer.push(Ok(response(500, "x")));
        }
        let b = doer
            .clone()
            .breaker()
            .serve_stale(ServeStale::new(Duration::from_secs(300)));
        b.execute(get("http://a.test/good")).await.unwrap();
        for _ in 0..5 {
            b.execute(get("http://a.test/x")).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        // 60 s later, the circuit is half-open? open lasts 10 s: reopen by failing once more
        let _ = b.execute(get("http://a.test/x")).await;
        let mut req = get("http://a.test/good");
        req.headers_mut()
            .insert("cache-control", "max-age=30".parse().unwrap());
        assert!(
            b.execute(req).await.is_err(),
            "max-age=30 caps a 60 s old answer"
        );
        let mut req = get("http://a.test/good");
        req.headers_mut()
            .insert("pragma", "no-cache".parse().unwrap());
        assert!(b.execute(req).await.is_err(), "Pragma: no-cache skips");
        let r = b.execute(get("http://a.test/good")).await.unwrap();
        assert!(r.extensions().get::<StaleAnswer>().is_some());
    }

    // README 267: new() sends User-Agent: http-doer/<version>
    #[tokio::test]
    async fn user_agent() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let s2 = seen.clone();
        tokio::spawn(async move {
            for _ in 0..2 {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0; 4096];
                let n = s.read(&mut buf).await.unwrap();
                s2.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_lowercase());
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
            }
        });
        let url = format!("http://{addr}/");
        http_doer::ReqwestDoer::new()
            .execute(get(&url))
            .await
            .unwrap();
        http_doer::UreqDoer::new().execute(get(&url)).await.unwrap();
        let want = format!("user-agent: http-doer/{}", env!("CARGO_PKG_VERSION"));
        for s in seen.lock().unwrap().iter() {
            assert!(s.contains(&want), "{s}");
        }
    }
}
