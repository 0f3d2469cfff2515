import threading
import time

from app.core.errors import AppError
from app.engine.jobs import CANCELLED, DONE, FAILED, JobRunner


def test_job_reports_progress_and_result():
    runner = JobRunner()
    seen = threading.Event()

    def work(progress, stop):
        progress(0.5, "halfway")
        seen.wait(5)
        return 42

    runner.start("round", work)
    time.sleep(0.05)
    status = runner.status("round")
    assert status.active and status.progress == 0.5 and status.message == "halfway"
    seen.set()
    final = runner.wait("round", 5)
    assert final.state == DONE and final.result == 42 and final.progress == 1.0


def test_second_start_while_running_returns_the_running_job():
    runner = JobRunner()
    gate = threading.Event()
    first = runner.start("round", lambda p, s: gate.wait(5))
    second = runner.start("round", lambda p, s: None)
    assert second.id == first.id
    gate.set()
    runner.wait("round", 5)


def test_errors_are_kept_with_user_message():
    runner = JobRunner()

    def fail(progress, stop):
        raise AppError("Add more images first.")

    runner.start("round", fail)
    status = runner.wait("round", 5)
    assert status.state == FAILED and status.error == "Add more images first."


def test_unexpected_errors_do_not_escape():
    runner = JobRunner()
    runner.start("round", lambda p, s: 1 / 0)
    status = runner.wait("round", 5)
    assert status.state == FAILED and "ZeroDivisionError" in status.error


def test_cancel_sets_the_stop_event():
    runner = JobRunner()

    def loop(progress, stop):
        while not stop.is_set():
            time.sleep(0.01)

    runner.start("round", loop)
    runner.cancel("round")
    assert runner.wait("round", 5).state == CANCELLED
