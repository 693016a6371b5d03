"""Team sending pauses in the ops UI: list the paused teams with their evidence, lift or
confirm one with an audited reason. The same functions as `kibamail teams pauses`
(kibamail.team_pauses), so a lift from either place emits `team.unpaused` and resets the
team's scoring window."""

from typing import Any

import dagster as dg


class PauseDecisionConfig(dg.Config):
    """Which team, what to do, who decides and why (all audited)."""

    team_id: str
    action: str = "lift"  # lift | confirm
    reason: str
    operator: str


def _redis() -> Any:
    from kibamail.clients import redis_client
    from kibamail.settings import get_settings

    return redis_client(get_settings())


@dg.op(description="List every paused team with its score, components and sample subjects.")
def list_team_pauses(context: dg.OpExecutionContext) -> dg.Output[list[dict[str, Any]]]:
    from kibamail.team_pauses import list_pauses

    redis = _redis()
    try:
        records = [r.as_dict() for r in list_pauses(redis)]
    finally:
        redis.close()
    for record in records:
        context.log.info(
            f"{record['team_id']} {record['state']} score {record['score']:.2f}: "
            f"{record['reason']} | subjects: {record['sample_subjects']}"
        )
    return dg.Output(records, metadata={"paused_teams": len(records)})


@dg.op(description="Lift or confirm a team's pause, with the operator's audited reason.")
def decide_team_pause(
    context: dg.OpExecutionContext, config: PauseDecisionConfig
) -> dg.Output[dict[str, str]]:
    from kibamail.team_pauses import PauseError, confirm, lift

    if config.action not in {"lift", "confirm"}:
        raise dg.Failure(description=f"action must be lift or confirm, not {config.action!r}")
    redis = _redis()
    try:
        if config.action == "lift":
            event = lift(redis, config.team_id, operator=config.operator, reason=config.reason)
            outcome = {"team_id": config.team_id, "action": "lift", "event_id": event.event_id}
        else:
            confirm(redis, config.team_id, operator=config.operator, reason=config.reason)
            outcome = {"team_id": config.team_id, "action": "confirm"}
    except PauseError as exc:
        raise dg.Failure(description=str(exc)) from exc
    finally:
        redis.close()
    context.log.info(f"{config.action} {config.team_id} by {config.operator}: {config.reason}")
    return dg.Output(outcome, metadata=outcome)


@dg.job(description="List the paused teams with their evidence (read-only).")
def team_pauses_list() -> None:
    list_team_pauses()


@dg.job(description="Lift or confirm one team's pause (config: team_id, action, reason, operator).")
def team_pause_decision() -> None:
    decide_team_pause()


defs = dg.Definitions(jobs=[team_pauses_list, team_pause_decision])
