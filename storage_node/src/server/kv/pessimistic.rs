//! KvPessimisticLock and KvPessimisticRollback: the two RPCs of pessimistic transactions
//! (`begin_pessimistic`, `get_for_update`, `batch_get_for_update`, `lock_keys`).
//!
//! Answers follow TiKV's legacy (non-"wake-up") mode, the one the TiKV client speaks: one
//! `KeyError` for the whole request on failure (the client resolves a `locked` one and
//! retries, and gives a `conflict` back to the caller); on success `values` and `not_founds`,
//! one per requested key in request order, when values or existence were asked for.

use tonic::{Request, Response, Status};

use super::{HasContext, KvService, err_text, key_error, region_error, region_error_response};
use crate::lock_manager;
use crate::proto::kvrpcpb::{self, Assertion};
use crate::txn::actions::acquire_pessimistic_lock::{AcquireArgs, LockKey};
use crate::txn_types::{Key, TimeStamp, keys_from_raw};

/// KvPessimisticLock.
pub(super) async fn lock(
    svc: &KvService,
    request: Request<kvrpcpb::PessimisticLockRequest>,
) -> Result<Response<kvrpcpb::PessimisticLockResponse>, Status> {
    traced!(
        svc,
        request,
        "KvPessimisticLock",
        |r: &kvrpcpb::PessimisticLockRequest| r.start_version,
        |r: &kvrpcpb::PessimisticLockRequest| r.mutations.iter().map(|m| m.key.clone()).collect(),
        |r: kvrpcpb::PessimisticLockRequest| async move {
            let wants_values = r.return_values || r.check_existence;
            let return_values = r.return_values;
            let args = AcquireArgs {
                keys: r
                    .mutations
                    .into_iter()
                    .map(|m| LockKey {
                        // How the client says "INSERT": the key must not exist.
                        should_not_exist: m.assertion == Assertion::NotExist as i32,
                        key: Key::from(m.key),
                    })
                    .collect(),
                primary: Key::from(r.primary_lock),
                start_ts: TimeStamp::from(r.start_version),
                lock_ttl: r.lock_ttl,
                for_update_ts: TimeStamp::from(r.for_update_ts),
                return_values: r.return_values,
                check_existence: r.check_existence,
                lock_only_if_exists: r.lock_only_if_exists,
                min_commit_ts: TimeStamp::from(r.min_commit_ts),
            };
            let wait = lock_manager::wait_timeout(r.wait_timeout);
            let mut resp = kvrpcpb::PessimisticLockResponse::default();
            let result = svc.storage.acquire_pessimistic_lock(args, wait).await;
            let error = err_text(&result);
            match result {
                Ok(values) if wants_values => {
                    for value in values {
                        resp.not_founds.push(value.is_none());
                        // Existence only: TiKV sends empty values beside `not_founds`.
                        resp.values.push(if return_values {
                            value.unwrap_or_default()
                        } else {
                            Vec::new()
                        });
                    }
                }
                Ok(_) => {}
                Err(e) if region_error(&mut resp, &e) => {}
                Err(e) => resp.errors = key_error(&e).into_iter().collect(),
            }
            (resp, error)
        }
    )
}

/// KvPessimisticRollback.
pub(super) async fn rollback(
    svc: &KvService,
    request: Request<kvrpcpb::PessimisticRollbackRequest>,
) -> Result<Response<kvrpcpb::PessimisticRollbackResponse>, Status> {
    traced!(
        svc,
        request,
        "KvPessimisticRollback",
        |r: &kvrpcpb::PessimisticRollbackRequest| r.start_version,
        |r: &kvrpcpb::PessimisticRollbackRequest| r.keys.clone(),
        |r: kvrpcpb::PessimisticRollbackRequest| async move {
            let mut resp = kvrpcpb::PessimisticRollbackResponse::default();
            let result = svc
                .storage
                .pessimistic_rollback(
                    keys_from_raw(r.keys),
                    TimeStamp::from(r.start_version),
                    TimeStamp::from(r.for_update_ts),
                )
                .await;
            let error = err_text(&result);
            if let Err(e) = result
                && !region_error(&mut resp, &e)
            {
                resp.errors = key_error(&e).into_iter().collect();
            }
            (resp, error)
        }
    )
}
