import legato


async def test_a_saga_whose_last_step_fails_is_compensated_in_reverse(coordinator: legato.Coordinator) -> None:
    calls: list[str] = []

    def step(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        def run(ctx: legato.StepContext) -> str:
            calls.append(f"{ctx.step}.{ctx.op}")
            if fail:
                raise legato.Failure("sold out")
            return name

        return run

    trip = legato.Saga("trip")
    trip.step("flight", action=step("f"), compensate=step("cf"))
    trip.step("car", action=step("c", fail=True), compensate=step("cc"))
    outcome = await (await coordinator.submit(trip, {}, gid="g")).result(timeout=10)
    assert outcome.status is legato.TxStatus.FAILED
    assert calls == ["flight.action", "car.action", "car.compensate", "flight.compensate"]
