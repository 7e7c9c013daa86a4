//! What this process's threads are doing in the kernel, for a report when
//! something that should have finished did not (a stop step that timed out).

use std::fmt::Write as _;

/// One line per thread: its name, id and wait channel, then its kernel
/// stack (readable by root only; left out otherwise). Threads that are
/// merely waiting for work (`epoll`, `futex`) are listed without a stack.
pub fn kernel_report() -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return "no /proc/self/task".into();
    };
    let mut tids: Vec<_> = tasks.flatten().map(|e| e.path()).collect();
    tids.sort();
    for t in tids {
        let read = |f: &str| std::fs::read_to_string(t.join(f)).unwrap_or_default();
        let tid = t.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        let wchan = read("wchan");
        let _ = write!(out, "\n  thread {} ({tid}): wchan {}", read("comm").trim(), wchan.trim());
        if !is_idle_wait(wchan.trim()) {
            for frame in read("stack").lines().take(12) {
                let _ = write!(out, "\n      {}", frame.trim());
            }
        }
    }
    out
}

/// Wait channels of a thread that sleeps until it has work.
fn is_idle_wait(wchan: &str) -> bool {
    [
        "do_epoll_wait",
        "ep_poll",
        "futex_wait_queue",
        "futex_wait_queue_me",
        "futex_do_wait",
        "do_nanosleep",
        "hrtimer_nanosleep",
    ]
    .contains(&wchan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_this_thread_and_a_named_one() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .name("report-probe".into())
            .spawn(move || {
                // Named (the thread names itself as it starts) and waiting.
                let _ = ready_tx.send(());
                rx.recv()
            })
            .unwrap();
        ready.recv().unwrap();
        let r = kernel_report();
        drop(tx);
        let _ = h.join();
        assert!(r.contains("thread report-probe ("), "{r}");
        assert!(r.lines().filter(|l| l.trim_start().starts_with("thread ")).count() >= 2, "{r}");
    }

    #[test]
    fn idle_waits_are_known() {
        assert!(is_idle_wait("do_epoll_wait"));
        assert!(!is_idle_wait("netlink_recvmsg"));
        assert!(!is_idle_wait(""));
    }
}
