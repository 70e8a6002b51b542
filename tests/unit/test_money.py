"""handlers.money's remembered amounts: the same Decimal as Decimal(text), exponent and all,
within a bound."""

from decimal import Decimal

from handlers import money


def test_an_amount_is_the_decimal_of_its_text_whether_remembered_or_not() -> None:
    for text in ["0", "0.10", "1.50", "12.345678", "0.000001", "9999999999.999999", "1.50"]:
        made = money.amount(text)
        assert made == Decimal(text) and str(made) == str(Decimal(text)), text
        assert money.amount(text) is made  # remembered: the same immutable object


def test_the_amounts_remembered_are_bounded() -> None:
    for n in range(money.AMOUNTS_KEPT_MAX + 10):
        money.amount(f"{n}.5")
    assert money.amounts_remembered() <= money.AMOUNTS_KEPT_MAX
    assert str(money.amount("7.5")) == "7.5"
