"""Account state: the product (admin key) puts and reads an account's tier, seats and add-ons."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from service.api.deps import (
    AccountIdPath,
    AdminDep,
    BillingDep,
    CatalogDep,
    ClockDep,
    SessionDep,
)
from service.api.problems import problem_responses
from service.api.schemas import AccountOut, AccountPut, MoneyOut
from service.domain.accounts import AccountStatus, recurring_amount
from service.domain.catalog import Catalog, Interval
from service.domain.errors import ValidationFailed
from service.services.account_state import account_mrr, plan_of
from service.services.accounts import Account, AccountInput, get_account, put_account

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


def account_out(catalog: Catalog, row: Account) -> AccountOut:
    recurring = recurring_amount(catalog, plan_of(row))
    mrr = account_mrr(catalog, row)
    return AccountOut(
        id=row.id,
        name=row.name,
        tier=row.tier,
        interval=Interval(row.interval),
        seats=row.seats,
        addons=row.addons,
        currency=row.currency,
        status=AccountStatus(row.status),
        current_period_start=row.current_period_start,
        current_period_end=row.current_period_end,
        billing_customer_id=row.billing_customer_id,
        billing_subscription_id=row.billing_subscription_id,
        catalog_version=row.catalog_version,
        limits_version=row.limits_version,
        recurring_amount=MoneyOut(amount_minor=recurring.minor, currency=recurring.currency),
        mrr=MoneyOut(amount_minor=mrr.minor, currency=mrr.currency),
        credit_balance=MoneyOut(amount_minor=row.credit_balance_minor or 0, currency=row.currency),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def parse_if_match(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ValidationFailed(
            'If-Match must be the account\'s version, e.g. "3"', field="If-Match"
        )
    return int(value)


@router.put(
    "/{account_id}",
    response_model=AccountOut,
    responses={201: {"model": AccountOut, "description": "created"}}
    | problem_responses(401, 403, 404, 409, 422),
)
def put(
    account_id: AccountIdPath,
    body: AccountPut,
    response: Response,
    session: SessionDep,
    catalog: CatalogDep,
    clock: ClockDep,
    billing: BillingDep,
    _: AdminDep,
    if_match: Annotated[
        str | None, Header(description="Expected version (optimistic lock)")
    ] = None,
) -> AccountOut:
    row, created = put_account(
        session,
        catalog,
        clock,
        account_id,
        AccountInput(**body.model_dump()),
        expected_version=parse_if_match(if_match),
        gateway=billing,
    )
    response.status_code = 201 if created else 200
    response.headers["ETag"] = f'"{row.version}"'
    return account_out(catalog, row)


@router.get(
    "/{account_id}", response_model=AccountOut, responses=problem_responses(401, 403, 404, 422)
)
def get(
    account_id: AccountIdPath,
    response: Response,
    session: SessionDep,
    catalog: CatalogDep,
    _: AdminDep,
) -> AccountOut:
    row = get_account(session, account_id)
    response.headers["ETag"] = f'"{row.version}"'
    return account_out(catalog, row)
