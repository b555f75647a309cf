from billing import views
from django.urls import path

urlpatterns = [path("invoices/<int:invoice_id>/charge", views.charge_invoice)]
