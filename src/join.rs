//! Waiting for several futures at once on the current thread, and a work queue over a bounded
//! number of workers (folders over several connections), without a dependency for it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Runs every job over at most `workers` workers: the first worker is `first`, the others are
/// made by `open` only when there is a job for them; each takes the next job from the queue
/// when it is done with one, and is ended by `close`. All jobs run even when one fails; the
/// first error is returned.
pub async fn work_queue<W, J, O>(
    first: W,
    jobs: Vec<J>,
    workers: usize,
    open: impl AsyncFn() -> anyhow::Result<W>,
    work: impl AsyncFn(&mut W, J) -> anyhow::Result<O>,
    close: impl AsyncFn(W) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<O>> {
    let queue = RefCell::new(VecDeque::from(jobs));
    let count = workers.clamp(1, queue.borrow().len().max(1));
    let (queue, open, work, close) = (&queue, &open, &work, &close);
    let mut first = Some(first);
    let runs: Vec<_> = (0..count)
        .map(|_| {
            let given = first.take();
            async move {
                let mut outputs = Vec::new();
                let Some(job) = queue.borrow_mut().pop_front() else {
                    if let Some(w) = given {
                        close(w).await?;
                    }
                    return Ok(outputs);
                };
                let mut worker = match given {
                    Some(w) => w,
                    None => open().await?,
                };
                let mut next = Some(job);
                while let Some(job) = next {
                    outputs.push(work(&mut worker, job).await?);
                    next = queue.borrow_mut().pop_front();
                }
                close(worker).await?;
                Ok::<_, anyhow::Error>(outputs)
            }
        })
        .collect();
    let mut all = Vec::new();
    for result in join_all(runs).await {
        all.extend(result?);
    }
    Ok(all)
}

/// Polls every future until all are done; returns their outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_all_concurrently_and_keeps_order() {
        let started = std::time::Instant::now();
        let futures: Vec<_> = (0..4u64)
            .map(|i| async move {
                tokio::time::sleep(std::time::Duration::from_millis(200 - i * 40)).await;
                i
            })
            .collect();
        assert_eq!(join_all(futures).await, vec![0, 1, 2, 3]);
        // Concurrent: about the longest sleep, not the sum (which would be 560 ms).
        assert!(started.elapsed() < std::time::Duration::from_millis(450));
    }

    #[tokio::test]
    async fn work_queue_uses_at_most_the_workers_and_does_every_job() {
        let opened = std::cell::Cell::new(0);
        let done = work_queue(
            0usize,
            (1..=10u64).collect(),
            3,
            async || {
                opened.set(opened.get() + 1);
                Ok(opened.get())
            },
            async |w: &mut usize, job: u64| {
                tokio::time::sleep(std::time::Duration::from_millis(job)).await;
                Ok((*w, job))
            },
            async |_w: usize| Ok(()),
        )
        .await
        .unwrap();
        assert_eq!(opened.get(), 2, "two more workers besides the given one");
        let mut jobs: Vec<u64> = done.iter().map(|&(_, j)| j).collect();
        jobs.sort_unstable();
        assert_eq!(jobs, (1..=10).collect::<Vec<_>>());
        let workers: std::collections::BTreeSet<usize> = done.iter().map(|&(w, _)| w).collect();
        assert_eq!(workers.len(), 3);
        // A failing job fails the whole, after the others ran.
        let result = work_queue(
            (),
            vec![1, 2, 3],
            2,
            async || Ok(()),
            async |_: &mut (), job: i32| {
                if job == 2 {
                    anyhow::bail!("job 2 failed")
                } else {
                    Ok(job)
                }
            },
            async |_: ()| Ok(()),
        )
        .await;
        assert!(result.unwrap_err().to_string().contains("job 2"));
    }
}
