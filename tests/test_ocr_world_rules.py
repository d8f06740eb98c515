"""The OCR engine's rules on documents from several countries (issue 19): money, totals, tax, type,
dates, supplier and address, on hand-made text lines (no OCR model, no real documents: fast)."""

from __future__ import annotations

import pytest

from docvlm.normalize import normalize_value, parse_money
from docvlm.ocr import TextLine, find_ungrounded, load_ocr_rules
from docvlm.ocr.classify import detect_type
from docvlm.ocr.fields import read_sale
from docvlm.ocr.page import Page, money_values
from docvlm.ocr.sale import repair_amounts
from docvlm.schema import load_schema

SCHEMA = load_schema()
RULES = load_ocr_rules()


def page(*rows: str | tuple[str, ...], size: float = 20) -> Page:
    """One row per argument, top to bottom; a tuple is a row of cells spread left to right."""
    lines = []
    for index, row in enumerate(rows):
        cells = (row,) if isinstance(row, str) else row
        for column, text in enumerate(cells):
            x0 = 40 + column * 420
            lines.append(TextLine(text, (x0, 40 + index * 30, x0 + len(text) * size * 0.55, 40 + index * 30 + size),
                                  0.99))
    return Page.from_lines(lines, RULES.row_overlap)


def fields_of(p: Page) -> dict[str, str]:
    doc_type, _ = detect_type(p, RULES, SCHEMA)
    fields, _ = read_sale(p, SCHEMA.type_spec(doc_type), RULES, SCHEMA)
    return {**fields, "DOCUMENT_TYPE": doc_type}


# ----------------------------------------------------------------------------- money
@pytest.mark.parametrize("text, value", [
    ("RM 12.50", 12.5), ("€ 1.234,56", 1234.56), ("1.234,56 EUR", 1234.56), ("£3.20", 3.2), ("Rs. 450", 450.0),
    ("USD1,000.00", 1000.0), ("12,50 €", 12.5), ("-RM1.73", -1.73), ("EUR -3,50", -3.5), ("1'234.50 CHF", 1234.5),
    ("1,234", 1234.0), ("$1,020.22", 1020.22), ("(12.50)", -12.5), ("2 items $15.00", 15.0), ("1 234,56 €", 1234.56),
])
def test_the_normaliser_reads_money_of_many_countries(text: str, value: float) -> None:
    assert parse_money(text) == pytest.approx(value)
    assert normalize_value(text, "money", SCHEMA) == f"{'-' if value < 0 else ''}${abs(value):.2f}"


def test_page_amounts_take_decimal_commas_but_not_dates_or_rates() -> None:
    assert [v for v, _ in money_values("Gesamtbetrag: 1.571,04 €")] == [1571.04]
    assert [v for v, _ in money_values("MwSt. 19,00% 37,62")] == [37.62]
    assert [v for v, _ in money_values("18.04.2018 Betrag 10,00")] == [10.0]
    assert [v for v, _ in money_values("Total TTC 1\u202f234,56 €")] == [1234.56]  # grouped by a no-break space
    assert [v for v, _ in money_values("2 100,00 200,00")] == [100.0, 200.0]  # a quantity is no thousands group


def test_amounts_misread_by_ocr_are_repaired() -> None:
    assert repair_amounts("GST RMO.47", RULES) == "GST RM0.47"
    assert repair_amounts("Grand Total RM8 .35", RULES) == "Grand Total RM8.35"
    assert repair_amounts("AMT PAID: RMI11.90", RULES) == "AMT PAID: RM111.90"
    assert repair_amounts("Total 1O.50", RULES) == "Total 10.50"
    assert repair_amounts("Total <RM.34.80", RULES) == "Total <RM 34.80"
    assert repair_amounts("SUBTOTAL RM96. 20", RULES) == "SUBTOTAL RM96.20"
    assert repair_amounts("TOTAL 28-90", RULES) == "TOTAL 28.90"
    assert repair_amounts("Date 28-04-18 12:30-13:45", RULES) == "Date 28-04-18 12:30-13:45"  # dates and times stay


# ----------------------------------------------------------------------------- totals and tax
@pytest.mark.parametrize("rows, total", [
    ([("Subtotal", "RM 28.40"), ("Total Sales Incl GST", "RM 28.40"), ("CASH", "RM 50.00"), ("CHANGE", "RM 21.60")],
     "$28.40"),
    ([("Nettobetrag", "100,00 €"), ("MwSt. 19%", "19,00 €"), ("Gesamtbetrag", "119,00 €")], "$119.00"),
    ([("Rechnungssumme Netto (excl. USt.)", "198,00"), ("Rechnungssumme Brutto (inkl. USt.)", "235,62")], "$235.62"),
    ([("Total HT", "624,90 €"), ("Total TTC", "671,15 €"), ("Solde à payer", "470,15 €")], "$671.15"),
    ([("Subtotaal", "50,00"), ("BTW 21%", "10,50"), ("Totaal", "60,50")], "$60.50"),
    ([("Subtotal", "10,00"), ("IVA 21%", "2,10"), ("Importe total", "12,10"), ("Cambio", "7,90")], "$12.10"),
    ([("Total incl. VAT", "£120.00"), ("Amount Due", "£0.00")], "$120.00"),
    ([("Balance Due", "$88.00")], "$88.00"),
    ([("Summe netto", "50,00"), ("zzgl. 19% MwSt.", "9,50"), ("Zu zahlender Betrag", "59,50")], "$59.50"),
    ([("VAT rate", "Net", "VAT", "Gross"), ("20%", "100.00", "20.00", "120.00")], "$120.00"),
    # the rounded total, not the one before rounding, and no "Total" of a tax summary
    ([("Total Sales Incl GST", "122.78"), ("Rounding Adj", "0.02"), ("Total After Adj Incl GST", "122.80"),
      ("CASH", "200.00"), ("GST Summary",), ("Total", "119.77")], "$122.80"),
    ([("Grand Total", "10.02"), ("Rounding", "-0.02"), ("Total Payable", "10.00")], "$10.00"),
    ([("T ota l", "RM 5.00")], "$5.00"),  # labels that OCR split or cut short
    ([("Tota l Incl . GST@6%", "RM 31.20"), ("GST @6% included in tota l", "RM 1.77")], "$31.20"),
    ([("To tal I nc l. GST06%", "RM 13.30"), ("GS T @6% i n c luded in total", "RM 0.75")], "$13.30"),
    ([("Sub-Total", "15.60"), ("Grand Tota", "6.70"), ("Change Due", "43.30")], "$6.70"),
    ([("Item Count 3",), ("Total Qty", "15.00"), ("Total", "9.90")], "$9.90"),
    ([("Total", "9.90"), ("Amount Tendered", "20.00"), ("Change", "10.10")], "$9.90"),
])
def test_the_total_is_the_grand_total_in_several_languages(rows: list[tuple[str, ...]], total: str) -> None:
    assert fields_of(page("Shop", *rows))["TOTAL_AMOUNT"] == total


@pytest.mark.parametrize("rows, tax", [
    ([("Subtotal", "100.00"), ("GST 6%", "6.00"), ("Total", "106.00")], "$6.00"),
    ([("Total excl. VAT", "100.00"), ("VAT 20%", "100.00", "20.00"), ("Total incl. VAT", "120.00")], "$20.00"),
    ([("TVA 20,0%", "81,90 €", "16,38 €"), ("TVA 5,5%", "543,00 €", "29,87 €"), ("Total taxes", "46,25 €"),
      ("Total TTC", "671,15 €")], "$46.25"),
    ([("MwSt. 7%", "160,00", "11,20"), ("MwSt. 19%", "336,00", "63,84"), ("Gesamtbetrag", "571,04")], "$75.04"),
    ([("Nettobetrag", "MwSt-Betrag", "Endbetrag"), ("100,00", "19,00", "119,00")], "$19.00"),  # column headers
    ([("BTW 0%", "0,00"), ("Totaal", "50,00")], "$0.00"),  # a tax-exempt invoice prints its zero tax
])
def test_tax_lines_in_several_languages(rows: list[tuple[str, ...]], tax: str) -> None:
    assert fields_of(page("Shop", *rows))["GST_AMOUNT"] == tax


def test_a_total_with_tax_is_a_total_and_a_tax_total_is_tax() -> None:
    fields = fields_of(page("Shop", ("Total GST", "6.00"), ("Total (incl. GST)", "106.00")))
    assert (fields["TOTAL_AMOUNT"], fields["GST_AMOUNT"]) == ("$106.00", "$6.00")


# ----------------------------------------------------------------------------- type
def test_a_receipt_that_prints_tax_invoice_is_a_receipt_when_it_shows_payment() -> None:
    receipt = page("TAX INVOICE", "Invoice No: 12345", ("Total", "10.00"), ("CASH", "20.00"), ("CHANGE", "10.00"))
    assert detect_type(receipt, RULES, SCHEMA)[0] == "RECEIPT"
    invoice = page("TAX INVOICE", "Invoice No: 12345", "Due Date: 30/04/2024", ("Total", "10.00"))
    assert detect_type(invoice, RULES, SCHEMA)[0] == "INVOICE"
    german = page("Rechnung", "Rechnungsdatum 05.03.2024", "Zahlbar innerhalb 30 Tagen", ("Gesamtbetrag", "119,00"))
    assert detect_type(german, RULES, SCHEMA)[0] == "INVOICE"
    till = page("Bäckerei Schmidt", ("Summe EUR", "7,40"), ("Kartenzahlung", "7,40"), "Vielen Dank")
    assert detect_type(till, RULES, SCHEMA)[0] == "RECEIPT"


# ----------------------------------------------------------------------------- dates
@pytest.mark.parametrize("text, date", [
    ("7. Mai 2014", "07/05/2014"), ("20 Mar 2023", "20/03/2023"), ("13 novembre 2017", "13/11/2017"),
    ("7 mei 2014", "07/05/2014"), ("24. Januar 2014", "24/01/2014"), ("2016-07-31", "31/07/2016"),
    ("18/04/201810:30", "18/04/2018"), ("20180428", "28/04/2018"), ("05.03.2018", "05/03/2018"),
    ("12/13/2016", "13/12/2016"),  # month first only where day first is impossible
])
def test_dates_in_several_languages_and_forms(text: str, date: str) -> None:
    assert normalize_value(text, "date", SCHEMA) == date


def test_implausible_years_are_no_dates() -> None:
    assert normalize_value("31/12/3018", "date", SCHEMA) == "31/12/3018"  # kept as text, not read as a date
    assert fields_of(page("Shop", "XE11-22-30", "24-01-16 11:44", ("Total", "5.00")))["INVOICE_DATE"] == "24/01/2016"


def test_the_document_date_wins_over_due_service_order_and_version_dates() -> None:
    german = page("ZUGFeRD-Version: 2.1 vom 24.03.2020", "Handelsrechnung Nr. 471102 vom 05.03.2020",
                  "Liefer- und Leistungsdatum: 01.03.2020", "Rechnung gemäß Bestellung vom 01.02.2020",
                  "Zahlbar bis 04.04.2020", ("Gesamtbetrag", "119,00"))
    assert fields_of(german)["INVOICE_DATE"] == "05/03/2020"
    labelled = page(("Bestell-Datum:", "01.08.2013"), ("Beleg-Datum:", "16.09.2013"), "Reklamation vom 10.09.2013")
    assert fields_of(labelled)["INVOICE_DATE"] == "16/09/2013"
    french = page(("Date d'échéance", "13/12/2017"), ("Date de facture", "13/11/2017"))
    assert fields_of(french)["INVOICE_DATE"] == "13/11/2017"


# ----------------------------------------------------------------------------- supplier
@pytest.mark.parametrize("rows, name", [
    (["AEON CO. (M) BHD (126926-H)", "3RD FLR, AEON TAMAN MALURI SC", "CHERAS, 55100 KUALA LUMPUR"],
     "AEON CO. (M) BHD"),
    (["TAX INVOICE", "99 SPEED MART S/B", "LOT P.T. 2811, JALAN ANGSA"], "99 SPEED MART S/B"),
    (["MPH BOOKSTORES", "SDN BHD", "CO. NO. 12345-X"], "MPH BOOKSTORES SDN BHD"),
    (["OLD ASIA", "OWNED BY: CHEF LEE SDN BHD", "CO. NO.(458592-T)"], "CHEF LEE SDN BHD"),
    (["K STATIONERY & OFFICE SUPPLIES", "NO.9, JALAN MANIS 3", "Company Reg No.:001260452-W"],
     "K STATIONERY & OFFICE SUPPLIES"),  # "Company" of a registration label is no name
    (["Rechnung", "Bergmann Werkzeuge GmbH", "Hauptstraße 5", "10115 Berlin"], "Bergmann Werkzeuge GmbH"),
    (["FACTURE", "Boulangerie Martin SARL", "12 rue de la Paix", "75002 Paris"], "Boulangerie Martin SARL"),
    (["Factuur", "Van Dijk Installatie B.V.", "Keizersgracht 12", "1015 CJ Amsterdam"], "Van Dijk Installatie B.V."),
])
def test_the_supplier_is_the_business_name_near_the_top(rows: list[str], name: str) -> None:
    assert fields_of(page(*rows, ("Total", "10.00")))["SUPPLIER_NAME"] == name


def test_the_buyer_above_the_seller_is_not_the_supplier() -> None:
    fields = fields_of(page("Rechnungsempfänger:", "Kunden AG Mitte", "Kundenstraße 15", "69876 Frankfurt",
                            "Lieferant GmbH", "Lieferantenstraße 20", "80333 München", ("Gesamtbetrag", "119,00")))
    assert (fields["SUPPLIER_NAME"], fields["PAYER_NAME"]) == ("Lieferant GmbH", "Kunden AG Mitte")
    assert fields["BUSINESS_ADDRESS"] == "Lieferantenstraße 20, 80333 München"


def test_a_unit_is_no_legal_form() -> None:
    lines = [TextLine("FRESH MART", (40, 40, 400, 80), 0.99), TextLine("BANANAS LOOSE 1 KG", (40, 100, 300, 120), 0.99),
             TextLine("Total 5.00", (40, 140, 200, 160), 0.99)]
    assert fields_of(Page.from_lines(lines, RULES.row_overlap))["SUPPLIER_NAME"] == "FRESH MART"


def test_the_supplier_under_a_seller_label_not_the_buyer_or_the_title() -> None:
    p = page("Stylesheet zur Lesbarmachung von Rechnungen", "Verkäufer:", ("Name:", "Muster Technik AG"),
             "Käufer:", ("Name:", "Kunde GmbH"), ("Gesamtbetrag", "119,00"))
    assert fields_of(p)["SUPPLIER_NAME"] == "Muster Technik AG"
    assert fields_of(page("Seller: Northwind Traders Ltd", "Bill To: Jane Doe", ("Total", "5.00")))["SUPPLIER_NAME"] \
        == "Northwind Traders Ltd"


def test_a_brand_over_the_company_is_not_part_of_its_name() -> None:
    lines = [TextLine("AA PHARMACY", (100, 40, 500, 100), 0.99),
             TextLine("SUBANG HEALTHCARE SDN BHD", (60, 105, 560, 130), 0.99),
             TextLine("Total 5.00", (60, 300, 260, 325), 0.99)]
    assert fields_of(Page.from_lines(lines, RULES.row_overlap))["SUPPLIER_NAME"] == "SUBANG HEALTHCARE SDN BHD"


def test_a_name_set_on_two_lines_is_joined() -> None:
    lines = [TextLine("Verkäufer", (40, 40, 140, 60), 0.99), TextLine("MVM Musterhafter", (400, 75, 560, 95), 0.99),
             TextLine("Name:", (40, 100, 100, 120), 0.99),
             TextLine("Versicherungsverein Musterstadt a.G.", (400, 100, 740, 120), 0.99),
             TextLine("Gesamtbetrag 10,00", (40, 200, 240, 220), 0.99)]
    p = Page.from_lines(lines, RULES.row_overlap)
    assert fields_of(p)["SUPPLIER_NAME"] == "MVM Musterhafter Versicherungsverein Musterstadt a.G."


# ----------------------------------------------------------------------------- address
@pytest.mark.parametrize("rows, address", [
    (["AEON CO. (M) BHD (126926-H)", "3RD FLR, AEON TAMAN MALURI SC", "JLN JEJAKA, TAMAN MALURI",
      "CHERAS, 55100 KUALA LUMPUR", "GST ID : 002017394688"],
     "3RD FLR, AEON TAMAN MALURI SC, JLN JEJAKA, TAMAN MALURI, CHERAS, 55100 KUALA LUMPUR"),
    (["Bergmann Werkzeuge GmbH", "Tel. 030 123456", "Hauptstraße 5", "10115 Berlin", "Deutschland"],
     "Hauptstraße 5, 10115 Berlin"),  # contact lines before the address are passed over, the country left out
    (["Boulangerie Martin SARL", "12 rue de la Paix", "75002 Paris"], "12 rue de la Paix, 75002 Paris"),
    (["Van Dijk Installatie B.V.", "Keizersgracht 12", "1015 CJ Amsterdam"], "Keizersgracht 12, 1015 CJ Amsterdam"),
    (["Northwind Traders Ltd", "153 Victoria Street", "London SW1B 3BN", "VAT GB123456789"],
     "153 Victoria Street, London SW1B 3BN"),
    (["Maple Leaf Supplies Inc.", "250 Queen St W", "Toronto, ON M5V 1Z4"], "250 Queen St W, Toronto, ON M5V 1Z4"),
    (["KEDAI RUNCIT MAJU", "NO. 135, JALAN BANGI, 43500", "SEMENYIH, SELANGOR", "TEL: 03-8723 1234"],
     "NO. 135, JALAN BANGI, 43500, SEMENYIH, SELANGOR"),  # the town after a postcode at a line's end
    (["Bluegum Plumbing Pty Ltd", "Unit 8,213 Wattle Parade", "Parramatta Nsw2150"],
     "Unit 8, 213 Wattle Parade, Parramatta NSW 2150"),
    # a country code before the postcode is left out, like a country line (kept where no postcode follows)
    (["Lieferant GmbH", "Lieferantenstraße 20", "DE 80333 München"], "Lieferantenstraße 20, 80333 München"),
    (["Papeterie Dupont SARL", "4 rue du Port", "F-13002 Marseille"], "4 rue du Port, 13002 Marseille"),
    (["Northwind Traders Ltd", "153 Victoria Street", "GB SW1B 3BN London"], "153 Victoria Street, SW1B 3BN London"),
    (["Kantoor Centrum B.V.", "Stationsplein 3", "NL-1012 AB Amsterdam"], "Stationsplein 3, 1012 AB Amsterdam"),
    (["SYARIKAT MAJU SDN BHD", "NO 12 JALAN SS2/24", "47300 PETALING JAYA"], "NO 12 JALAN SS2/24, 47300 PETALING JAYA"),
])
def test_the_address_is_the_block_under_the_supplier(rows: list[str], address: str) -> None:
    assert fields_of(page(*rows, ("Total", "10.00")))["BUSINESS_ADDRESS"] == address


def test_grounding_finds_amounts_printed_with_decimal_commas() -> None:
    schema_spec = SCHEMA.type_spec("INVOICE")
    lines = [TextLine("Gesamtbetrag: 1.571,04 €", (40, 40, 400, 60), 0.99),
             TextLine("MwSt. 19% 75,04", (40, 80, 400, 100), 0.99)]
    fields = {"TOTAL_AMOUNT": "$1571.04", "GST_AMOUNT": "$75.04"}
    assert find_ungrounded(fields, schema_spec, lines, SCHEMA) == []
    assert find_ungrounded({"TOTAL_AMOUNT": "$1571.40"}, schema_spec, lines, SCHEMA) == ["TOTAL_AMOUNT"]


def test_the_recipient_in_the_letterhead_is_not_the_suppliers_address() -> None:
    fields = fields_of(page("MVM Versicherungsverein a.G.", "Herrn", "Max Mustermann", "Musterstr. 11",
                            "12346 Bad Musterhausen", "Versicherungsbüro", "Musterstr. 12", "12345 Musterstadt",
                            "Tel.: 0123/45678", ("Rechnungsbetrag", "59,50 €")))
    assert fields["BUSINESS_ADDRESS"] == "Musterstr. 12, 12345 Musterstadt"
    assert fields["PAYER_NAME"] == "Max Mustermann"
    assert fields["PAYER_ADDRESS"] == "Musterstr. 11, 12346 Bad Musterhausen"


def test_a_till_date_next_to_an_order_number_is_the_date() -> None:
    assert fields_of(page("Shop", "Order No. 1000070 17/04/2018 07:13 PM", ("Total", "5.00")))["INVOICE_DATE"] \
        == "17/04/2018"


# ----------------------------------------------------------------------------- items
def test_item_tables_with_german_column_headers() -> None:
    lines = [TextLine(text, (x, y, x + len(text) * 11, y + 20), 0.99) for text, x, y in [
        ("Bergmann Werkzeuge GmbH", 40, 40), ("Menge", 40, 200), ("Bezeichnung", 160, 200), ("Einzelpreis", 600, 200),
        ("Gesamtpreis", 800, 200), ("2", 40, 240), ("Hammer:", 160, 240), ("12,50", 600, 240), ("25,00", 800, 240),
        ("1", 40, 280), ("Zange", 160, 280), ("8,00", 600, 280), ("8,00", 800, 280),
        ("Gesamtbetrag", 600, 340), ("33,00", 800, 340)]]
    fields = fields_of(Page.from_lines(lines, RULES.row_overlap))
    assert fields["LINE_ITEM_DESCRIPTIONS"] == "Hammer | Zange"
    assert fields["LINE_ITEM_TOTAL_PRICES"] == "$25.00 | $8.00"
    assert fields["TOTAL_AMOUNT"] == "$33.00"


def test_terms_and_conditions_on_a_receipt_do_not_make_it_an_invoice() -> None:
    receipt = page("COSWAY (M) SDN BHD", ("AMT PAID INCL GST", "RM 111.90"), "Invoice (Terms & Conditions apply)")
    assert detect_type(receipt, RULES, SCHEMA)[0] == "RECEIPT"
    invoice = page("Acme Pty Ltd", ("Total", "110.00"), "Payment terms: 14 days", "Paid")
    assert detect_type(invoice, RULES, SCHEMA)[0] == "INVOICE"  # paid (1) is not more than payment terms (1)


def test_german_compound_period_and_due_labels() -> None:
    p = page(("Abrechnungszeitraum:", "01.10.2018 bis 31.10.2018"), ("Fälligkeitsdatum:", "30.11.2018"),
             "Gutschrift Nr. 47110818 vom 02.11.2018", ("Gesamtbetrag", "119,00"))
    assert fields_of(p)["INVOICE_DATE"] == "02/11/2018"
